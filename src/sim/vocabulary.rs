//! The words the simulated rooms use: nicknames, chat lines, gifts, badges.
//!
//! Plain data, kept apart from the [`traffic`](super::traffic) generator so
//! that each reads in one go. The chat lines and nicknames mix everyday
//! text with the cases that break careless clients: `/` and `@` (escaped
//! on the wire as `@S` and `@A`), text that *looks* escaped (`@S`, `@AS`,
//! `key@=value/`), quotes, emoji, URLs and empty text.

/// Nicknames, including ones that need escaping or look like escapes.
pub const NICKNAMES: [&str; 16] = [
    "观众",
    "小老弟233",
    "拒绝R",
    "@Alice",
    "斜杠/青年",
    "Ana丷",
    "宋宋宋555",
    "🐟鱼丸🐟",
    "\"引号\"君",
    "50%@S折",
    "user@A",
    "雨神丶",
    "夜猫子",
    "a/b/c",
    "Zhang San",
    "弹幕姬",
];

/// Chat lines. The tricky ones test escaping: a decoder that unescapes in
/// the wrong order, or guesses at nesting, gets them wrong.
pub const TEXTS: [&str; 36] = [
    "注意保暖",
    "哈哈哈哈哈哈",
    "666666",
    "主播好帅",
    "前排",
    "打卡",
    "这波操作可以的",
    "下次一定",
    "晚上好",
    "来了来了",
    "主播今天播到几点？",
    "🐟🐟🐟",
    "😂😂😂",
    "👍",
    "🎉恭喜恭喜🎉",
    "1/2 进度",
    "w/o 开挂",
    "https://www.douyu.com/9999?from=barrage&x=1",
    "a//b",
    "/",
    "@主播 看弹幕",
    "@Alice 你好",
    "邮箱 someone@example.com",
    "@S 不是斜杠",
    "@A 不是艾特",
    "@AS@SA@@",
    "key@=value/",
    "@=",
    "@",
    "他说\"你好\"",
    "'单引号' and `反引号`",
    "tab\there",
    "",
    "",
    "中英 mixed text 123",
    "ok",
];

/// Repeated to make the rare long chat line (1–2 KB).
pub const LONG_PHRASE: &str = "这是一条很长很长的弹幕/@S，";

/// Gifts: `(gfid, gfn)`.
pub const GIFTS: [(u32, &str); 8] = [
    (824, "粉丝荧光棒"),
    (20000, "鱼丸"),
    (192, "赞"),
    (193, "弱鸡"),
    (20003, "飞机"),
    (20004, "火箭"),
    (21196, "飘雪火箭"),
    (20005, "超级火箭"),
];

/// Fan badge names (`bnn`).
pub const BADGES: [&str; 5] = ["拒绝R", "集团军", "小僵尸", "鱼塘", "夜猫"];

/// Room titles (`room_name`, `roomName`), with what breaks careless page
/// scrapers: quotes and backslashes (JSON), `<`, `&` and a closing script
/// tag (HTML), a tab, and an escape sequence that would clear a terminal.
pub const ROOM_NAMES: [&str; 12] = [
    "今晚吃鸡，不吃不下播",
    "【国服第一】冲分中",
    "新人主播求关注~",
    "🎮 深夜档 🎮",
    "户外直播：走遍中国",
    "A&B 双排 & 聊天",
    "\"引号\"与\\反斜杠\\",
    "<b>不是粗体</b>",
    "</script><script>alert(1)</script>",
    "tab\there",
    "\u{1b}[2J清屏主播",
    "1/2 进度 @S @A",
];

/// Categories (`second_lvl_name`).
pub const CATEGORIES: [&str; 8] = ["英雄联盟", "王者荣耀", "绝地求生", "户外", "颜值", "DOTA2", "主机游戏", "一起看"];
