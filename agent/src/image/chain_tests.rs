//! The workspace's error convention, "each cause printed once": a Display
//! never repeats its `source()`. One error of each kind that carries an OS,
//! JSON or HTTP cause is printed the way husklet prints it (anyhow's chain,
//! without the edge's de-duplication), and the cause must show up once.

use std::error::Error;
use std::path::PathBuf;

use super::content::ContentError;
use super::digest::{Digest, DigestError};
use super::manifest::ManifestError;
use super::meta::MetaError;
use super::reference::ReferenceError;
use super::registry::RegistryError;
use super::registry::auth::AuthError;
use super::registry::credhelper::HelperError;
use super::registry::hosts::HostsError;
use super::snapshot::SnapshotError;
use super::store::ImageError;
use super::unpack::UnpackError;

fn enoent() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::ENOENT)
}

fn bad_json() -> serde_json::Error {
    serde_json::from_str::<serde_json::Value>("{").unwrap_err()
}

/// `e`'s chain `: `-joined, as anyhow's `{:#}` prints it, after checking that no
/// link repeats the next one.
fn chain(e: ImageError) -> String {
    husk_tests::error_links(&e).join(": ")
}

#[test]
fn every_cause_is_printed_once() {
    let io = enoent().to_string();
    let json = bad_json().to_string();
    let path = PathBuf::from("/no/such");
    let layer = Digest::of(b"layer");
    // A request that fails before it is sent: reqwest's message is "builder
    // error", the reason is only in its source.
    let http = reqwest::Client::new().get("no url").build().unwrap_err();
    let http_reason = http
        .source()
        .expect("reqwest error has a source")
        .to_string();
    let cases: Vec<(ImageError, &str)> = vec![
        (
            ImageError::Unpack {
                layer,
                cause: UnpackError::Tar(enoent()),
            },
            &io,
        ),
        (
            ImageError::Unpack {
                layer,
                cause: UnpackError::Io {
                    path: "etc/passwd".into(),
                    cause: enoent(),
                },
            },
            &io,
        ),
        (
            ContentError::Io {
                path: path.clone(),
                cause: enoent(),
            }
            .into(),
            &io,
        ),
        (
            ReferenceError::Digest(
                "busybox@sha1:00".into(),
                DigestError::Algorithm("sha1:00".into()),
            )
            .into(),
            "unsupported algorithm",
        ),
        (
            SnapshotError::Io {
                path: path.clone(),
                cause: enoent(),
            }
            .into(),
            &io,
        ),
        (
            ImageError::Io {
                path: path.clone(),
                cause: enoent(),
            },
            &io,
        ),
        (
            MetaError::Io {
                path: path.clone(),
                cause: enoent(),
            }
            .into(),
            &io,
        ),
        (
            MetaError::Corrupt {
                path: path.clone(),
                cause: bad_json(),
            }
            .into(),
            &json,
        ),
        (
            ManifestError::Json {
                what: "manifest".into(),
                cause: bad_json(),
            }
            .into(),
            &json,
        ),
        (
            RegistryError::Auth(AuthError::Helper(HelperError::Spawn {
                program: "docker-credential-x".into(),
                server: "example.org".into(),
                path: path.clone(),
                cause: enoent(),
            }))
            .into(),
            &io,
        ),
        (
            RegistryError::Unreachable {
                registry: "example.org".into(),
                url: "no url".into(),
                cause: http,
            }
            .into(),
            &http_reason,
        ),
        (
            RegistryError::Hosts(HostsError::Io {
                path: path.clone(),
                cause: enoent(),
            })
            .into(),
            &io,
        ),
    ];
    for (e, cause) in cases {
        let full = chain(e);
        assert_eq!(full.matches(cause).count(), 1, "{cause:?} in {full:?}");
    }
}
