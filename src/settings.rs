//! What a refused setting says, shared by every configuration's `validate`
//! (the session's, the monitor's, the simulator's): the setting's name, so
//! the command line can point at its flag, and one sentence for a person.

use std::fmt;
use std::time::Duration;

/// A setting out of its range, or at odds with another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingError {
    /// The setting, as named in the config file (`idle_timeout`); its flag
    /// is the same with dashes (`--idle-timeout`).
    pub setting: &'static str,
    /// One sentence, starting with what is wrong.
    pub message: String,
}

impl SettingError {
    pub fn new(setting: &'static str, message: impl Into<String>) -> Self {
        SettingError { setting, message: message.into() }
    }

    /// The command-line flag of the setting.
    pub fn flag(&self) -> String {
        format!("--{}", self.setting.replace('_', "-"))
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SettingError {}

/// Checks that `value` is from `min` to `max`, both included.
pub fn duration_within(
    setting: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), SettingError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(SettingError::new(
        setting,
        format!(
            "{setting} must be from {} s to {} s (got {} s)",
            min.as_secs_f64(),
            max.as_secs_f64(),
            value.as_secs_f64()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_its_setting_and_flag() {
        let error = duration_within("idle_timeout", Duration::ZERO, Duration::from_secs(1), Duration::from_secs(2));
        let error = error.unwrap_err();
        assert_eq!(error.to_string(), "idle_timeout must be from 1 s to 2 s (got 0 s)");
        assert_eq!(error.flag(), "--idle-timeout");
        assert!(duration_within("x", Duration::from_secs(2), Duration::ZERO, Duration::from_secs(2)).is_ok());
    }
}
