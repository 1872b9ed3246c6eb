//! iptables through `iptables-restore --noflush` batches (one process per
//! change instead of one per rule) and `iptables-save` for reading, with
//! the reference plugins' chain names and comments.

use std::io::Write;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha512};

/// An iptables command failed.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    /// The binary could not be run.
    #[error("{program}: {cause}")]
    Spawn {
        /// The binary.
        program: String,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The binary reported a failure.
    #[error("{program} failed: {stderr}")]
    Failed {
        /// The binary.
        program: String,
        /// Its stderr.
        stderr: String,
    },
}

/// IPv4 or IPv6 tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// iptables.
    V4,
    /// ip6tables.
    V6,
}

impl Family {
    fn prefix(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// The family of an address.
    pub fn of(ip: &std::net::IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// `CNI-<sha512(name+id)>` truncated to 28 characters (`prefix` goes after
/// `CNI-`, e.g. `DN-`), as the reference plugins name per-container chains.
pub fn chain_name(prefix: &str, name: &str, id: &str) -> String {
    let digest = Sha512::digest(format!("{name}{id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut c = format!("CNI-{prefix}{hex}");
    c.truncate(28);
    c
}

/// The reference plugins' rule comment: `name: "<net>" id: "<container>"`.
pub fn comment(name: &str, id: &str) -> String {
    format!("name: \"{name}\" id: \"{id}\"")
}

/// Quote a comment for an iptables-restore line.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Apply a batch atomically (`*nat` ... `COMMIT` text) without flushing
/// anything else. Retried when the kernel reports a concurrent change.
pub fn restore(family: Family, input: &str) -> Result<(), IptablesError> {
    let program = format!("{}-restore", family.prefix());
    let mut last = None;
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(10 * attempt));
        }
        let spawn = |cause| IptablesError::Spawn {
            program: program.clone(),
            cause,
        };
        let mut child = Command::new(&program)
            .args(["--noflush", "-w", "5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let Some(mut i) = child.stdin.take() {
            i.write_all(input.as_bytes()).map_err(spawn)?;
        }
        let out = child.wait_with_output().map_err(spawn)?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let transient = ["temporarily", "busy", "lock", "Interrupted"]
            .iter()
            .any(|w| stderr.contains(w));
        last = Some(IptablesError::Failed {
            program: program.clone(),
            stderr: format!("{stderr}\ninput:\n{input}"),
        });
        if !transient {
            break;
        }
    }
    Err(last.unwrap_or(IptablesError::Failed {
        program,
        stderr: String::new(),
    }))
}

/// One table as `iptables-save` prints it.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Chain names.
    pub chains: Vec<String>,
    /// `-A CHAIN ...` rule lines, in order.
    pub rules: Vec<String>,
}

impl Table {
    /// Parse `iptables-save -t <table>` output.
    pub fn parse(text: &str) -> Table {
        let mut t = Table::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(':') {
                if let Some(name) = rest.split_whitespace().next() {
                    t.chains.push(name.to_string());
                }
            } else if line.starts_with("-A ") {
                t.rules.push(line.to_string());
            }
        }
        t
    }

    /// Whether a chain exists.
    pub fn has_chain(&self, c: &str) -> bool {
        self.chains.iter().any(|x| x == c)
    }

    /// Rules of `chain`.
    pub fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        let p = format!("-A {chain} ");
        self.rules.iter().filter(move |r| r.starts_with(&p))
    }

    /// Rules anywhere that jump to `target`.
    pub fn jumps_to<'a>(&'a self, target: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        let j = format!("-j {target}");
        self.rules
            .iter()
            .filter(move |r| r.ends_with(&j) || r.contains(&format!("{j} ")))
    }
}

/// Read one table.
pub fn save(family: Family, table: &str) -> Result<Table, IptablesError> {
    let program = format!("{}-save", family.prefix());
    let out = Command::new(&program)
        .args(["-t", table])
        .stderr(Stdio::piped())
        .output()
        .map_err(|cause| IptablesError::Spawn {
            program: program.clone(),
            cause,
        })?;
    if !out.status.success() {
        return Err(IptablesError::Failed {
            program,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(Table::parse(&String::from_utf8_lossy(&out.stdout)))
}

/// Turn a saved `-A` rule into its `-D` twin.
pub fn delete_of(rule: &str) -> String {
    match rule.strip_prefix("-A ") {
        Some(r) => format!("-D {r}"),
        None => rule.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_match_the_reference_scheme() {
        let c = chain_name("", "podnet", "abc");
        assert_eq!(c.len(), 28);
        assert!(c.starts_with("CNI-"));
        let d = chain_name("DN-", "podnet", "abc");
        assert!(d.starts_with("CNI-DN-"));
        assert_eq!(d.len(), 28);
        assert_ne!(chain_name("", "podnet", "abd"), c);
        // The reference's digest: sha512("podnetabc") starts with these hex digits.
        let digest = Sha512::digest(b"podnetabc");
        assert_eq!(&c[4..6], &format!("{:02x}", digest[0]));
    }

    #[test]
    fn parses_save_output() {
        let t = Table::parse(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:CNI-x - [0:0]\n-A POSTROUTING -s 10.0.0.2/32 -m comment --comment \"name: \\\"n\\\" id: \\\"c\\\"\" -j CNI-x\n-A CNI-x ! -d 224.0.0.0/4 -j MASQUERADE\nCOMMIT\n",
        );
        assert!(t.has_chain("CNI-x"));
        assert_eq!(t.rules_of("CNI-x").count(), 1);
        assert_eq!(t.jumps_to("CNI-x").count(), 1);
        assert!(delete_of(&t.rules[0]).starts_with("-D POSTROUTING"));
        assert_eq!(
            quote(&comment("n", "c")),
            "\"name: \\\"n\\\" id: \\\"c\\\"\""
        );
    }
}
