//! A small command-line parser with runc's syntax (urfave/cli v1 on Go's
//! `flag`): `--flag value`, `--flag=value`, the single-dash long forms
//! `-flag value` / `-flag=value`, short aliases (`-b x`, `-b=x`, `-dt`),
//! `--flag=true|false` for switches, and `--` to end the flags. Flags are
//! described by static tables; one loop serves every command, and values stay
//! strings until a command's `Args::parse` asks for them.

use std::fmt::Write as _;
use std::iter::Peekable;
use std::path::PathBuf;
use std::str::FromStr;

/// The words left to parse.
pub type Words = Peekable<std::vec::IntoIter<String>>;

/// What a flag takes after its name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Nothing (a switch), or `=true` / `=false`.
    Switch,
    /// A value, inline (`=v`) or the next word, whatever it looks like
    /// (so `--memory -1` works, as in Go).
    Value,
    /// An optional value: inline, or the next word if it is `true`, `false`
    /// or `auto` (runc's `--rootless`); alone it means `true`.
    Optional,
}

/// One entry of a flag table.
#[derive(Debug)]
pub struct Flag {
    /// The long name, without dashes.
    pub long: &'static str,
    /// The one-letter alias, or 0 for none.
    pub short: u8,
    pub kind: Kind,
    /// The usage line; empty hides the flag.
    pub help: &'static str,
}

/// A flag without a value.
pub const fn switch(long: &'static str, short: u8, help: &'static str) -> Flag {
    Flag {
        long,
        short,
        kind: Kind::Switch,
        help,
    }
}

/// A flag with a value.
pub const fn value(long: &'static str, short: u8, help: &'static str) -> Flag {
    Flag {
        long,
        short,
        kind: Kind::Value,
        help,
    }
}

/// `-h, --help`, which every command accepts.
pub const HELP: Flag = switch("help", b'h', "Show this help");

/// A command line that cannot be parsed; the message names the flag or argument.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The flags and positional arguments found, in order.
#[derive(Debug, Default)]
pub struct Matches {
    /// (long name, value) per flag given; switches hold "true" or "false".
    vals: Vec<(&'static str, String)>,
    /// The positional arguments.
    pub pos: Vec<String>,
}

impl Matches {
    /// The last value given for a flag (Go's flag package: the last one wins).
    pub fn get(&self, long: &str) -> Option<&str> {
        let last = self.vals.iter().rev().find(|(n, _)| *n == long);
        last.map(|(_, v)| v.as_str())
    }

    /// Every value given for a repeatable flag, in order.
    pub fn all<'a>(&'a self, long: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.vals
            .iter()
            .filter(move |(n, _)| *n == long)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a switch is on.
    pub fn on(&self, long: &str) -> bool {
        self.get(long) == Some("true")
    }

    /// A flag's value as a path.
    pub fn path(&self, long: &str) -> Option<PathBuf> {
        self.get(long).map(PathBuf::from)
    }

    /// A flag's value as a number.
    pub fn num<T: FromStr>(&self, long: &str) -> Result<Option<T>, UsageError> {
        self.get(long).map(|v| number(long, v)).transpose()
    }

    /// Positional argument `i`, or "" (the command table has checked the count).
    pub fn arg(&self, i: usize) -> String {
        self.pos.get(i).cloned().unwrap_or_default()
    }
}

/// `v` as a number, or an error naming the flag.
pub fn number<T: FromStr>(long: &str, v: &str) -> Result<T, UsageError> {
    v.parse()
        .map_err(|_| UsageError(format!("--{long}: invalid number {v:?}")))
}

/// Parse words into `m` with the flags of `tables` (searched in order),
/// until `stop` positional arguments have been found; the rest of `words`
/// is left to the caller.
pub fn parse(
    words: &mut Words,
    tables: &[&[Flag]],
    m: &mut Matches,
    stop: usize,
) -> Result<(), UsageError> {
    let find = |hit: &dyn Fn(&Flag) -> bool| tables.iter().flat_map(|t| t.iter()).find(|f| hit(f));
    while m.pos.len() < stop {
        let Some(word) = words.next() else {
            return Ok(());
        };
        if word == "--" {
            while m.pos.len() < stop
                && let Some(w) = words.next()
            {
                m.pos.push(w);
            }
            return Ok(());
        }
        let Some(body) = word.strip_prefix('-').filter(|b| !b.is_empty()) else {
            m.pos.push(word);
            continue;
        };
        let double = body.strip_prefix('-');
        let (name, inline) = match double.unwrap_or(body).split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (double.unwrap_or(body), None),
        };
        let named = |f: &Flag| f.long == name || (f.short != 0 && name.as_bytes() == [f.short]);
        if let Some(f) = find(&named) {
            take(f, inline, words, m)?;
            continue;
        }
        let unknown = || UsageError(format!("unknown flag {word:?}"));
        if double.is_some() {
            return Err(unknown());
        }
        // A cluster of one-letter flags (`-dt`, `-dp FILE`) as clap took
        // them. Only the last may take a value, and only from the next word:
        // `-bogus` must not become `-b ogus`.
        let mut rest = body.chars().peekable();
        while let Some(c) = rest.next() {
            let f = find(&|f: &Flag| f.short != 0 && c == f.short as char)
                .filter(|f| f.kind != Kind::Value || rest.peek().is_none())
                .ok_or_else(unknown)?;
            take(f, None, words, m)?;
        }
    }
    Ok(())
}

/// Record flag `f` with its inline value, or take its value from `words`.
fn take(
    f: &Flag,
    inline: Option<&str>,
    words: &mut Words,
    m: &mut Matches,
) -> Result<(), UsageError> {
    let v = match (f.kind, inline) {
        (Kind::Switch, None) => "true".into(),
        (Kind::Switch, Some(v)) => match v {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => "true".into(),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => "false".into(),
            _ => return Err(UsageError(format!("--{}: invalid boolean {v:?}", f.long))),
        },
        (_, Some(v)) => v.into(),
        (Kind::Value, None) => words
            .next()
            .ok_or_else(|| UsageError(format!("--{}: missing value", f.long)))?,
        (Kind::Optional, None) => words
            .next_if(|w| matches!(w.as_str(), "true" | "false" | "auto"))
            .unwrap_or_else(|| "true".into()),
    };
    m.vals.push((f.long, v));
    Ok(())
}

/// Usage lines for the visible flags of a table.
pub fn describe(out: &mut String, flags: &[Flag]) {
    for f in flags.iter().filter(|f| !f.help.is_empty()) {
        let v = if f.kind == Kind::Value { " value" } else { "" };
        let names = if f.short == 0 {
            format!("    --{}{v}", f.long)
        } else {
            format!("-{}, --{}{v}", f.short as char, f.long)
        };
        // Pad to a common column, with at least two spaces after a long name.
        let _ = writeln!(out, "  {names:<29} {}", f.help);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        value("bundle", b'b', "b"),
        switch("detach", b'd', "d"),
        switch("tty", b't', "t"),
        value("env", b'e', "e"),
        value("preserve-fds", 0, "p"),
        Flag {
            long: "rootless",
            short: 0,
            kind: Kind::Optional,
            help: "",
        },
    ];

    fn run(words: &[&str], stop: usize) -> Result<(Matches, Vec<String>), UsageError> {
        let mut w: Words = words
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
            .peekable();
        let mut m = Matches::default();
        parse(&mut w, &[FLAGS, &[HELP]], &mut m, stop)?;
        Ok((m, w.collect()))
    }

    fn ok(words: &[&str]) -> Matches {
        run(words, usize::MAX).unwrap().0
    }

    fn err(words: &[&str]) -> String {
        run(words, usize::MAX).unwrap_err().0
    }

    #[test]
    fn every_value_syntax() {
        for words in [
            &["--bundle", "/b"][..],
            &["--bundle=/b"],
            &["-bundle", "/b"],
            &["-bundle=/b"],
            &["-b", "/b"],
            &["-b=/b"],
            &["--b", "/b"],
        ] {
            let m = ok(words);
            assert_eq!(m.get("bundle"), Some("/b"), "{words:?}");
            assert!(m.pos.is_empty(), "{words:?}");
        }
    }

    #[test]
    fn switches_and_clusters() {
        let m = ok(&["-d", "--tty=false", "c1"]);
        assert!(m.on("detach") && !m.on("tty"));
        assert_eq!(m.pos, ["c1"]);
        let m = ok(&["-dt"]);
        assert!(m.on("detach") && m.on("tty"));
        let m = ok(&["-tdb", "x"]);
        assert!(m.on("detach") && m.on("tty"));
        assert_eq!(m.get("bundle"), Some("x"));
        let m = ok(&["--detach=true", "-tty=0", "-detach=f"]);
        assert!(!m.on("detach") && !m.on("tty"), "the last one wins");
        assert_eq!(
            err(&["--detach=maybe"]),
            r#"--detach: invalid boolean "maybe""#
        );
    }

    #[test]
    fn values_may_start_with_a_dash() {
        let m = ok(&["--bundle", "-1", "-e", "--x"]);
        assert_eq!(m.get("bundle"), Some("-1"));
        assert_eq!(m.get("env"), Some("--x"));
    }

    #[test]
    fn defaults_and_repeats() {
        let m = ok(&["-e", "A=1", "--env=B=2", "-e=C=3", "-env", "D=4", "x"]);
        assert_eq!(
            m.all("env").collect::<Vec<_>>(),
            ["A=1", "B=2", "C=3", "D=4"]
        );
        assert_eq!(m.get("bundle"), None);
        assert!(!m.on("detach"));
        assert_eq!(m.num::<u32>("preserve-fds"), Ok(None));
        let m = ok(&["--preserve-fds", "3", "--preserve-fds=4"]);
        assert_eq!(m.num::<u32>("preserve-fds"), Ok(Some(4)));
    }

    #[test]
    fn flags_mix_with_positionals_and_dashdash_ends_them() {
        let m = ok(&["a", "-d", "b", "--", "-t", "--bundle", "-"]);
        assert!(m.on("detach") && !m.on("tty"));
        assert_eq!(m.pos, ["a", "b", "-t", "--bundle", "-"]);
    }

    #[test]
    fn stop_leaves_the_rest_unparsed() {
        let (m, rest) = run(&["-d", "c1", "ls", "-la", "--bundle"], 1).unwrap();
        assert!(m.on("detach"));
        assert_eq!(m.pos, ["c1"]);
        assert_eq!(rest, ["ls", "-la", "--bundle"]);
        let (m, rest) = run(&["--", "c1", "-t"], 1).unwrap();
        assert!(!m.on("tty"));
        assert_eq!(
            (m.pos, rest),
            (vec!["c1".to_string()], vec!["-t".to_string()])
        );
    }

    #[test]
    fn optional_values() {
        for (words, want) in [
            (&["--rootless"][..], "true"),
            (&["--rootless=false"], "false"),
            (&["--rootless", "auto"], "auto"),
            (&["-rootless", "list"], "true"),
        ] {
            let m = ok(words);
            assert_eq!(m.get("rootless"), Some(want), "{words:?}");
        }
        assert_eq!(ok(&["--rootless", "list"]).pos, ["list"]);
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(err(&["--bogus"]), r#"unknown flag "--bogus""#);
        assert_eq!(err(&["-bogus=1"]), r#"unknown flag "-bogus=1""#);
        assert_eq!(err(&["-dx"]), r#"unknown flag "-dx""#);
        assert_eq!(err(&["-bd", "x"]), r#"unknown flag "-bd""#);
        assert_eq!(err(&["-b/x"]), r#"unknown flag "-b/x""#);
        assert_eq!(err(&["c1", "--bundle"]), "--bundle: missing value");
        let m = ok(&["--preserve-fds", "x"]);
        assert_eq!(
            m.num::<u32>("preserve-fds").unwrap_err().0,
            r#"--preserve-fds: invalid number "x""#
        );
        assert!(ok(&["-h"]).on("help") && ok(&["--help"]).on("help"));
    }

    #[test]
    fn usage_lists_visible_flags() {
        let mut out = String::new();
        describe(&mut out, FLAGS);
        assert!(out.contains("-b, --bundle value"), "{out}");
        assert!(out.contains("    --preserve-fds value"), "{out}");
        assert!(!out.contains("rootless"), "{out}");
        let mut long = String::new();
        describe(&mut long, &[value("memory-reservation", 0, "Soft limit")]);
        assert!(
            long.contains("--memory-reservation value Soft limit"),
            "a long flag name runs into its help: {long}"
        );
    }
}
