//! The JSON path of a serde_json error (`process.args[0]`, `linux.namespaces[2].type`).
//!
//! Parsing is plain `serde_json::from_slice`; only when it fails is the input
//! rescanned up to the error's position to find which value it was in. Tracking
//! the path while deserializing (serde_path_to_error) would instantiate the
//! whole oci-spec `Deserialize` tree a second time, and `husk`'s resident
//! text is its peak RSS.
//!
//! serde_json reports type and enum errors just after the bad value, a
//! missing field just after the `}` of the object that lacks it, and syntax
//! errors at the offending byte. So the path is that of the value being parsed
//! or just completed at the error's offset; the root renders as `.`.
//!
//! One case is coarser than serde_path_to_error: an error raised by a
//! `Deserialize` impl after its value was read (oci-spec's `Capability`,
//! `execCPUAffinity`) is positioned once serde_json has closed the enclosing
//! container, so for the last element or member the path names the array or
//! object. Errors between members name the container, not a `?` segment.

/// A serde_json error split into the JSON path it occurred at and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// `.` for the document itself.
    pub path: String,
    /// serde_json's message without its " at line N column M" suffix.
    pub message: String,
}

impl Located {
    /// Whether the error is about the document as a whole.
    pub fn is_root(&self) -> bool {
        self.path == "."
    }
}

/// Locate `err`, which came from parsing `input` with serde_json.
#[cold]
pub fn locate(input: &[u8], err: &serde_json::Error) -> Located {
    let text = err.to_string();
    // line 0 means serde_json knew no position (never for a slice, in practice).
    let (path, message) = if err.line() == 0 {
        (".".to_string(), text)
    } else {
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let message = text.strip_suffix(&suffix).unwrap_or(&text).to_string();
        (
            path_at(input, offset(input, err.line(), err.column())),
            message,
        )
    };
    Located { path, message }
}

/// Byte offset of serde_json's 1-based line and 0-based byte column, which
/// counts the bytes consumed on that line.
fn offset(input: &[u8], line: usize, column: usize) -> usize {
    let start = if line <= 1 {
        0
    } else {
        input
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(line - 2)
            .map_or(input.len(), |(i, _)| i + 1)
    };
    start.saturating_add(column).min(input.len())
}

enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Clone, Copy, PartialEq)]
enum Container {
    Object,
    Array,
}

#[derive(Clone, Copy)]
enum State {
    /// A value starts here; the path's last segment names it.
    Value,
    /// Just after `{`.
    FirstKey,
    /// After `,` in an object: a key must follow.
    Key,
    /// After a key: `:` must follow. The key joins the path only at the `:`
    /// (as with serde_path_to_error, whose tracking starts with the value).
    Colon,
    /// Just after `[`.
    FirstElement,
    /// After `,` in an array. The path still names the previous element:
    /// serde_json consumes the comma before positioning an error raised by
    /// that element's own `Deserialize` (e.g. an unknown capability).
    NextElement,
    /// A value was just completed; the path names it.
    After,
}

/// The path of the value being parsed or just completed after `end` bytes.
/// Stops early, with the path reached so far, at anything that is not JSON.
fn path_at(input: &[u8], end: usize) -> String {
    let end = end.min(input.len());
    let mut s = Scanner {
        input: &input[..end],
        pos: 0,
    };
    let mut path: Vec<Seg> = Vec::new();
    let mut stack: Vec<Container> = Vec::new();
    let mut state = State::Value;
    let mut key = String::new();
    let reached_end = loop {
        let Some(b) = s.next_token() else {
            break true;
        };
        state = match (state, b) {
            (State::Value, b'{') => {
                stack.push(Container::Object);
                State::FirstKey
            }
            (State::Value, b'[') => {
                stack.push(Container::Array);
                State::FirstElement
            }
            (State::Value, b'"') => match s.string() {
                Some(_) => State::After,
                None => break true,
            },
            (State::Value, _) => {
                if !s.scalar() {
                    break false;
                }
                State::After
            }
            (State::FirstKey | State::Key, b'"') => match s.string() {
                Some(k) => {
                    key = k;
                    State::Colon
                }
                None => break true,
            },
            (State::Colon, b':') => {
                path.push(Seg::Key(std::mem::take(&mut key)));
                State::Value
            }
            (State::FirstElement, b) if b != b']' => {
                s.pos -= 1;
                path.push(Seg::Index(0));
                State::Value
            }
            (State::NextElement, b) if b != b']' => {
                s.pos -= 1;
                next_index(&mut path);
                State::Value
            }
            (State::After, b',') => match stack.last() {
                Some(Container::Object) => {
                    path.pop();
                    State::Key
                }
                Some(Container::Array) => State::NextElement,
                None => break false,
            },
            (State::FirstKey | State::After, b'}') if stack.last() == Some(&Container::Object) => {
                if matches!(state, State::After) {
                    path.pop();
                }
                stack.pop();
                State::After
            }
            (State::FirstElement | State::After, b']')
                if stack.last() == Some(&Container::Array) =>
            {
                if matches!(state, State::After) {
                    path.pop();
                }
                stack.pop();
                State::After
            }
            // A missing or stray `,`, `]` or `}` is the container's error.
            (State::After | State::NextElement, _) if !stack.is_empty() => {
                path.pop();
                break false;
            }
            _ => break false,
        };
    };
    // serde_json reports an array or object where a scalar belongs just
    // before it, unconsumed: after `[` or `,` that is the next element.
    if reached_end && matches!(input.get(end), Some(b'[' | b'{')) {
        match state {
            State::FirstElement => path.push(Seg::Index(0)),
            State::NextElement => next_index(&mut path),
            _ => {}
        }
    }
    render(&path)
}

fn next_index(path: &mut [Seg]) {
    if let Some(Seg::Index(i)) = path.last_mut() {
        *i += 1;
    }
}

/// serde_path_to_error's rendering: keys joined by `.`, indices as `[i]`.
fn render(path: &[Seg]) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

struct Scanner<'a> {
    /// The input up to the error's offset: running out of it means "here".
    input: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    /// Skip whitespace and consume the next byte.
    fn next_token(&mut self) -> Option<u8> {
        while let Some(&b) = self.input.get(self.pos) {
            self.pos += 1;
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
        }
        None
    }

    /// Consume the rest of a string whose `"` was consumed, and decode it.
    /// None if the input ends inside it.
    fn string(&mut self) -> Option<String> {
        let mut out = Vec::new();
        loop {
            let b = *self.input.get(self.pos)?;
            self.pos += 1;
            match b {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let e = *self.input.get(self.pos)?;
                    self.pos += 1;
                    let c = match e {
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        other => char::from(other),
                    };
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                _ => out.push(b),
            }
        }
    }

    /// The character of a `\uXXXX` escape (with its low surrogate, if any)
    /// after the `\u`; U+FFFD if it is not a valid one. None if the input
    /// ends inside it.
    fn unicode_escape(&mut self) -> Option<char> {
        let hi = self.hex4()?;
        if !(0xD800..0xDC00).contains(&hi) {
            return Some(char::from_u32(hi).unwrap_or('\u{FFFD}'));
        }
        if self.input.get(self.pos..self.pos + 2) != Some(b"\\u") {
            return Some('\u{FFFD}');
        }
        self.pos += 2;
        let lo = self.hex4()?;
        if !(0xDC00..0xE000).contains(&lo) {
            return Some('\u{FFFD}');
        }
        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).or(Some('\u{FFFD}'))
    }

    /// Four hex digits; an invalid one makes U+FFFD.
    fn hex4(&mut self) -> Option<u32> {
        let digits = self.input.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        let value = std::str::from_utf8(digits)
            .ok()
            .and_then(|t| u32::from_str_radix(t, 16).ok());
        Some(value.unwrap_or(0xFFFD))
    }

    /// Consume the rest of a number or literal whose first byte was consumed,
    /// exactly as far as serde_json would; false where it would fail (or
    /// where the error offset cuts it short, which ends the scan either way).
    fn scalar(&mut self) -> bool {
        let first = self.input[self.pos - 1];
        let literal: &[u8] = match first {
            b't' => b"rue",
            b'f' => b"alse",
            b'n' => b"ull",
            b'-' | b'0'..=b'9' => return self.number(first),
            _ => return false,
        };
        for &want in literal {
            if self.input.get(self.pos) != Some(&want) {
                return false;
            }
            self.pos += 1;
        }
        true
    }

    /// JSON's number grammar, `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`,
    /// after its first byte.
    fn number(&mut self, first: u8) -> bool {
        let int_start = if first == b'-' {
            self.pos
        } else {
            self.pos - 1
        };
        self.digits();
        let int = &self.input[int_start..self.pos];
        if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
            return false;
        }
        if self.input.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return false;
            }
        }
        if matches!(self.input.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.input.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return false;
            }
        }
        true
    }

    fn digits(&mut self) -> usize {
        let n = self.input[self.pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.pos += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{Process, Spec};

    use super::*;

    /// Parse `json` as `T` the way husk does and locate the real error.
    fn err<T: serde::de::DeserializeOwned + std::fmt::Debug>(json: &str) -> Located {
        let e = serde_json::from_slice::<T>(json.as_bytes()).unwrap_err();
        locate(json.as_bytes(), &e)
    }

    fn spec(json: &str) -> Located {
        err::<Spec>(json)
    }

    fn process(json: &str) -> Located {
        err::<Process>(json)
    }

    const PROC: &str = r#""cwd":"/","user":{"uid":0,"gid":0}"#;

    #[test]
    fn wrong_type_in_a_nested_field() {
        let at = spec(&format!(
            r#"{{"ociVersion":"1.0.2","process":{{{PROC},"args":"x"}}}}"#
        ));
        assert_eq!(at.path, "process.args");
        assert_eq!(
            at.message,
            r#"invalid type: string "x", expected a sequence"#
        );
        let at = spec(r#"{"process":{"cwd":"/","user":{"uid":"root","gid":0}}}"#);
        assert_eq!(at.path, "process.user.uid");
        // An object or array where a scalar belongs is reported before it.
        let at = spec(r#"{"process":{"cwd":"/","user":{"uid":{"a":[1]},"gid":0}}}"#);
        assert_eq!(at.path, "process.user.uid");
        let at = spec(r#"{"root":{"path":"rootfs","readonly":"yes"}}"#);
        assert_eq!(at.path, "root.readonly");
        let at = process(&format!(r#"{{{PROC},"terminal":1}}"#));
        assert_eq!(at.path, "terminal");
    }

    #[test]
    fn bad_array_elements() {
        let at = spec(&format!(r#"{{"process":{{{PROC},"args":["a", 5]}}}}"#));
        assert_eq!(at.path, "process.args[1]");
        // An array or object where a string belongs is reported before it.
        let at = process(&format!(r#"{{{PROC},"args":[["a"]]}}"#));
        assert_eq!(at.path, "args[0]");
        let at = process(&format!(r#"{{{PROC},"args":["a", {{"b":1}}]}}"#));
        assert_eq!(at.path, "args[1]");
        let at = spec(r#"{"mounts":[{"destination":"/a","options":["ro", ["x"]]}]}"#);
        assert_eq!(at.path, "mounts[0].options[1]");
        let at = spec(
            r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["read"],"action":"SCMP_ACT_ALLOW"},
                {"names":["write", 7],"action":"SCMP_ACT_ALLOW"}]}}}"#,
        );
        assert_eq!(at.path, "linux.seccomp.syscalls[1].names[1]");
        let at = spec(r#"{"linux":{"uidMappings":[{"containerID":0,"hostID":0,"size":-1}]}}"#);
        assert_eq!(at.path, "linux.uidMappings[0].size");
    }

    #[test]
    fn missing_field_names_the_object_that_lacks_it() {
        let at = spec(r#"{"process":{"cwd":"/"}}"#);
        assert_eq!(at.path, "process");
        assert_eq!(at.message, "missing field `user`");
        let at = spec(r#"{"mounts":[{"destination":"/a"}, {"source":"/x"}]}"#);
        assert_eq!(at.path, "mounts[1]");
        assert_eq!(at.message, "missing field `destination`");
        let at = spec(r#"{"hooks":{"prestart":[{"path":"/bin/true","args":[]},{}]}}"#);
        assert_eq!(at.path, "hooks.prestart[1]");
        let at = process(r#"{"user":{"uid":0,"gid":0}}"#);
        assert_eq!(at.path, ".");
        assert_eq!(at.message, "missing field `cwd`");
    }

    #[test]
    fn unknown_variants() {
        let at =
            spec(r#"{"linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"foo"}]}}"#);
        assert_eq!(at.path, "linux.namespaces[2].type");
        assert!(at.message.starts_with("unknown variant `foo`"), "{at:?}");
    }

    #[test]
    fn capability_errors_positioned_after_the_list_element() {
        // Capability's own Deserialize fails after serde_json consumed the
        // element and the comma that follows it.
        let caps = |list: &str| {
            process(&format!(
                r#"{{{PROC},"capabilities":{{"bounding":{list}}}}}"#
            ))
        };
        let at = caps(r#"["CAP_CHOWN", "CAP_BOGUS", "CAP_KILL"]"#);
        assert_eq!(at.path, "capabilities.bounding[1]");
        assert!(at.message.contains("CAP_BOGUS"), "{at:?}");
        // As the last element, the error comes after the `]`: only the list.
        let at = caps(r#"["CAP_CHOWN", "CAP_BOGUS"]"#);
        assert_eq!(at.path, "capabilities.bounding");
    }

    #[test]
    fn cpu_affinity_errors_positioned_after_the_member() {
        let affinity = |obj: &str| process(&format!(r#"{{{PROC},"execCPUAffinity":{obj}}}"#));
        let at = affinity(r#"{"initial":"x-y", "final":"1"}"#);
        assert_eq!(at.path, "execCPUAffinity.initial");
        assert!(at.message.contains("x-y"), "{at:?}");
        // As the last member, the error comes after the `}`: only the object.
        let at = affinity(r#"{"initial":"1", "final":"x-y"}"#);
        assert_eq!(at.path, "execCPUAffinity");
    }

    #[test]
    fn syntax_errors() {
        // Between members, the container is at fault.
        let at = spec(r#"{"process":{"args":["a" "b"]}}"#);
        assert_eq!(at.path, "process.args");
        assert_eq!(at.message, "expected `,` or `]`");
        let at = spec(r#"{"process":{"cwd" "/"}}"#);
        assert_eq!(at.path, "process");
        assert_eq!(at.message, "expected `:`");
        let at = spec(r#"{"process":{"terminal": tru}}"#);
        assert_eq!(at.path, "process.terminal");
        let at = spec(r#"{"process":{"env":["A=1",]}}"#);
        assert_eq!(at.path, "process.env");
        let at = spec(r#"{"process":{"cwd":"/" "env":[]}}"#);
        assert_eq!(at.path, "process");
        let at = spec(r#"{"process":{"cwd":"/",}}"#);
        assert_eq!(at.path, "process");
        let at = spec(r#"{"process":{"args":["a", "b"#);
        assert_eq!(at.path, "process.args[1]");
        assert_eq!(at.message, "EOF while parsing a string");
        let at = spec(r#"{"hostname":"a\qb"}"#);
        assert_eq!(at.path, "hostname");
    }

    #[test]
    fn the_root() {
        for json in [
            "{ not json",
            "",
            "5",
            "{} x",
            "{\"ociVersion\":\"1\"}}",
            "nul",
            "{",
        ] {
            let at = spec(json);
            assert_eq!(at.path, ".", "{json:?}: {at:?}");
            assert!(at.is_root());
        }
        assert_eq!(
            spec("5").message,
            "invalid type: integer `5`, expected struct Spec"
        );
    }

    #[test]
    fn escaped_keys_and_pretty_printed_input() {
        let at = spec(r#"{"annotations":{"a\"b.\u00e9\ud83d\ude00":5}}"#);
        assert_eq!(at.path, "annotations.a\"b.\u{e9}\u{1F600}");
        // Multi-line input: serde_json's line and column map back to bytes.
        let mut v = serde_json::to_value(Spec::default()).unwrap();
        v["process"]["user"]["additionalGids"] = serde_json::json!([1, "two"]);
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        let at = spec(&pretty);
        assert_eq!(at.path, "process.user.additionalGids[1]");
        assert_eq!(at.message, r#"invalid type: string "two", expected u32"#);
    }

    #[test]
    fn path_at_offsets() {
        let json = br#"[[1, [2, 3]], {"k": [{"x": true}]}]"#;
        let at = |needle: &str| {
            let s = std::str::from_utf8(json).unwrap();
            path_at(json, s.find(needle).unwrap() + needle.len())
        };
        assert_eq!(path_at(json, 0), ".");
        // Before an array or object element, the path names that element.
        assert_eq!(path_at(json, 1), "[0]");
        assert_eq!(at("[1, "), "[0][1]");
        assert_eq!(at("[[1, [2, 3]], "), "[1]");
        assert_eq!(at("[2, "), "[0][1][0]");
        assert_eq!(at("[["), "[0]");
        assert_eq!(at("[[1"), "[0][0]");
        assert_eq!(at("[2, 3"), "[0][1][1]");
        assert_eq!(at("3]"), "[0][1]");
        assert_eq!(at("3]]"), "[0]");
        assert_eq!(at("{\"k"), "[1]");
        assert_eq!(at("\"k\""), "[1]");
        assert_eq!(at("\"k\":"), "[1].k");
        assert_eq!(at("true"), "[1].k[0].x");
        assert_eq!(at("true}"), "[1].k[0]");
        assert_eq!(at("true}]}"), "[1]");
        assert_eq!(path_at(json, json.len()), ".");
        assert_eq!(path_at(json, json.len() + 10), ".");
    }

    #[test]
    fn line_and_column_to_offset() {
        let text = b"ab\ncd\n\nef";
        assert_eq!(offset(text, 1, 0), 0);
        assert_eq!(offset(text, 1, 2), 2);
        assert_eq!(offset(text, 2, 1), 4);
        assert_eq!(offset(text, 4, 2), 9);
        assert_eq!(offset(text, 9, 9), 9);
    }
}
