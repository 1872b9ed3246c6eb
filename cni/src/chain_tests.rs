//! The workspace's error convention, "each cause printed once": a Display
//! never repeats its `source()`. One error of each kind that carries an OS,
//! JSON or netlink cause is printed as a chain (as anyhow's `{:#}` and the
//! CNI error JSON's `msg` show it), and the cause must show up exactly once.

use std::error::Error;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::ipam::StoreError;
use crate::iptables::IptablesError;
use crate::libcni::{ConfListError, ExecError, NetworkError};
use crate::netlink::conntrack::{ConntrackError, WireError};
use crate::netlink::{NetlinkError, NsError};
use crate::nftgen::GenError;
use crate::registry::RegistryError;

fn enoent() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::ENOENT)
}

fn bad_json() -> serde_json::Error {
    serde_json::from_str::<serde_json::Value>("{").unwrap_err()
}

/// `e` and its sources, joined with `: `, after checking that no link
/// repeats the next one.
fn chain(e: &dyn Error) -> String {
    husk_tests::error_links(e).join(": ")
}

#[test]
fn every_cause_is_printed_once() {
    let io = enoent().to_string();
    let errno = Errno::ENOENT.to_string();
    let json = bad_json().to_string();
    let path = PathBuf::from("/no/such");
    let exec_spawn = || ExecError::Spawn {
        plugin: "bridge".into(),
        cause: enoent(),
    };
    let cases: Vec<(Box<dyn Error>, &str)> = vec![
        (
            Box::new(IptablesError::Spawn {
                program: "iptables".into(),
                cause: enoent(),
            }),
            &io,
        ),
        (
            Box::new(RegistryError::Io {
                path: path.clone(),
                cause: enoent(),
            }),
            &io,
        ),
        (Box::new(GenError::from(Errno::ENOENT)), &errno),
        (
            Box::new(NsError::Open {
                path: path.clone(),
                cause: enoent(),
            }),
            &io,
        ),
        (
            Box::new(NsError::Setns {
                path: path.clone(),
                cause: Errno::ENOENT,
            }),
            &errno,
        ),
        (Box::new(NetlinkError::from(enoent())), &io),
        (
            Box::new(NetlinkError::Ns(NsError::Open {
                path: path.clone(),
                cause: enoent(),
            })),
            &io,
        ),
        (
            Box::new(NetlinkError::Request {
                what: "create bridge cni0".into(),
                cause: rtnetlink::Error::NamespaceError("gone".into()),
            }),
            "gone",
        ),
        (
            Box::new(ConntrackError::Io {
                what: "dump",
                cause: Errno::ENOENT,
            }),
            &errno,
        ),
        (
            Box::new(ConntrackError::Kernel {
                what: "dump",
                cause: Errno::ENOENT,
            }),
            &errno,
        ),
        (
            Box::new(ConntrackError::Wire {
                what: "dump",
                cause: WireError("netlink message length"),
            }),
            "netlink message length",
        ),
        (
            Box::new(StoreError::Io {
                path: path.clone(),
                cause: enoent(),
            }),
            &io,
        ),
        (Box::new(exec_spawn()), &io),
        (
            Box::new(ExecError::BadOutput {
                plugin: "bridge".into(),
                command: "ADD".into(),
                cause: bad_json(),
            }),
            &json,
        ),
        (
            Box::new(NetworkError::Exec {
                network: "net0".into(),
                cause: exec_spawn(),
            }),
            &io,
        ),
        (
            Box::new(NetworkError::Cache {
                network: "net0".into(),
                cause: enoent(),
            }),
            &io,
        ),
        (
            Box::new(NetworkError::Config(ConfListError::Io {
                path: path.clone(),
                cause: enoent(),
            })),
            &io,
        ),
        (
            Box::new(ConfListError::Json {
                what: "net0.conflist".into(),
                cause: bad_json(),
            }),
            &json,
        ),
    ];
    for (e, cause) in &cases {
        let full = chain(e.as_ref());
        assert_eq!(full.matches(cause).count(), 1, "{cause:?} in {full:?}");
        // The text alone (what a CNI error's msg gets) still names the cause.
        assert!(e.to_string().contains(cause), "{e}");
    }
}
