//! Server names to addresses, off the loop thread, again and again.
//!
//! std's resolver blocks, so names are resolved on a helper thread (by
//! [`Resolution::resolve`](super::Resolution::resolve): the system's, or a
//! test's) and the answers come back through a reactor channel. A daemon
//! runs for weeks, and names move: they are resolved again when a room is
//! about to connect and the last answers are older than
//! [`Resolution::refresh`](super::Resolution::refresh) (no timer needed:
//! addresses matter only when someone connects), after a room has failed
//! on every address (at most once per
//! [`Resolution::min_gap`](super::Resolution::min_gap)), and when asked
//! (SIGHUP). A name that resolves to nothing keeps its last good addresses,
//! and the log says so. New addresses serve the next connect; a joined room
//! is never disturbed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::endpoint::Endpoint;
use crate::fetch::Resolve;
use crate::plural::plural;
use crate::reactor::LoopSender;

/// One server's answer: its addresses, or why there are none.
pub(crate) type Answer = Result<Vec<SocketAddr>, String>;

/// The servers, their last good addresses, and the resolutions under way.
#[derive(Debug)]
pub(crate) struct AddressBook {
    servers: Vec<Endpoint>,
    /// Looks one name up (on the DNS thread).
    lookup: Resolve,
    /// Each server's last good addresses (empty until it first resolved).
    known: Vec<Vec<SocketAddr>>,
    /// Every known address of every server, in server order, with the
    /// number of its server: what rooms connect to, by index.
    all: Vec<(SocketAddr, usize)>,
    /// A resolution is under way.
    in_flight: bool,
    /// When the last one started.
    started: Option<Instant>,
}

impl AddressBook {
    pub(crate) fn new(servers: Vec<Endpoint>, lookup: Resolve) -> Self {
        let known = vec![Vec::new(); servers.len()];
        AddressBook { servers, lookup, known, all: Vec::new(), in_flight: false, started: None }
    }

    /// Every known address with its server's number, in server order.
    pub(crate) fn all(&self) -> &[(SocketAddr, usize)] {
        &self.all
    }

    /// Server number `index`.
    pub(crate) fn server(&self, index: usize) -> &Endpoint {
        &self.servers[index]
    }

    /// Starts a resolution on a helper thread unless one is under way, or
    /// one started less than `unless_within` ago. The answers arrive
    /// through `sender`, in server order.
    pub(crate) fn resolve(&mut self, now: Instant, unless_within: Duration, sender: &LoopSender<Vec<Answer>>) {
        if self.in_flight || self.started.is_some_and(|started| now < started + unless_within) {
            return;
        }
        self.in_flight = true;
        self.started = Some(now);
        let names: Vec<(String, u16)> = self.servers.iter().map(|server| (server.host.clone(), server.port)).collect();
        let (sender, lookup) = (sender.clone(), self.lookup);
        let spawned = std::thread::Builder::new().name("barrage-dns".into()).spawn(move || {
            let answers = names.iter().map(|(host, port)| lookup(host, *port).map_err(|e| e.to_string())).collect();
            sender.send(answers);
        });
        if let Err(e) = spawned {
            self.in_flight = false;
            log::error!("cannot start the DNS thread: {e}");
        }
    }

    /// Takes a resolution's answers; returns whether the addresses changed.
    /// A server without addresses this time keeps the ones it had.
    pub(crate) fn update(&mut self, answers: Vec<Answer>) -> bool {
        self.in_flight = false;
        for ((server, known), answer) in self.servers.iter().zip(&mut self.known).zip(answers) {
            match answer {
                Ok(found) if !found.is_empty() => *known = found,
                Ok(_) | Err(_) if !known.is_empty() => {
                    let why = answer.err().unwrap_or_else(|| "no addresses".into());
                    log::warn!(
                        "cannot resolve {server} ({why}); keeping its last {}",
                        plural(known.len() as u64, "address")
                    );
                }
                Ok(_) => log::warn!("cannot resolve {server}: no addresses"),
                Err(why) => log::warn!("cannot resolve {server}: {why}"),
            }
        }
        let all: Vec<(SocketAddr, usize)> = self
            .known
            .iter()
            .enumerate()
            .flat_map(|(server, addresses)| addresses.iter().map(move |&address| (address, server)))
            .collect();
        let changed = all != self.all;
        self.all = all;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_name_that_resolves_to_nothing_keeps_its_last_good_addresses() {
        let servers = vec!["a:1".parse().unwrap(), "wss://b:2".parse().unwrap()];
        let mut book = AddressBook::new(servers, crate::fetch::system_resolve);
        assert!(book.update(vec![Ok(vec![addr("10.0.0.1:1")]), Err("no such host".into())]));
        assert_eq!(book.all(), [(addr("10.0.0.1:1"), 0)], "b is tried again later");
        assert!(book.update(vec![Ok(vec![addr("10.0.0.1:1")]), Ok(vec![addr("10.0.0.2:2"), addr("10.0.0.3:2")])]));
        let all = [(addr("10.0.0.1:1"), 0), (addr("10.0.0.2:2"), 1), (addr("10.0.0.3:2"), 1)];
        assert_eq!(book.all(), all, "in server order, each with its server");
        assert!(!book.update(vec![Err("timed out".into()), Ok(vec![])]), "both keep what they had");
        assert_eq!(book.all().len(), 3);
        assert!(book.update(vec![Ok(vec![addr("10.0.0.9:1")]), Err("x".into())]), "a moved name is followed");
        assert_eq!(book.all()[0], (addr("10.0.0.9:1"), 0));
        assert!(book.server(1).uses_tls());
    }
}
