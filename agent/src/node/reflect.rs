//! A list-then-watch loop over a set of API objects, as client-go's
//! reflector: a list gives the full set and a resourceVersion; the watch
//! resumes from the last version seen (events and bookmarks), so a dropped
//! connection loses nothing; `410 Gone` (the version was compacted) means
//! relist, and the consumer reconciles against the full set.

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::error::status_code;

/// What the consumer learns.
#[derive(Debug)]
pub enum Change<K> {
    /// The whole set after a (re)list: anything not in it is gone.
    Listed(Vec<K>),
    /// Added or modified.
    Applied(K),
    /// Deleted (the object's last state).
    Deleted(K),
}

/// Server-side timeout of one watch request (the apiserver ends it; the
/// loop resumes from the last version).
const WATCH_TIMEOUT_SECS: u32 = 290;
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Keep `tx` told about the objects `api` lists with `field_selector`,
/// until the receiver goes. `what` names the set in logs.
pub async fn reflect<K>(
    api: Api<K>,
    field_selector: String,
    what: String,
    tx: mpsc::Sender<Change<K>>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut backoff = MIN_BACKOFF;
    'relist: loop {
        if tx.is_closed() {
            return;
        }
        let list = match api
            .list(&ListParams::default().fields(&field_selector))
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("list {what}: {}", crate::cri::error::chain(&e));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut version = list.metadata.resource_version.clone().unwrap_or_default();
        if tx.send(Change::Listed(list.items)).await.is_err() {
            return;
        }
        loop {
            let wp = WatchParams::default()
                .fields(&field_selector)
                .timeout(WATCH_TIMEOUT_SECS);
            let stream = match api.watch(&wp, &version).await {
                Ok(s) => s,
                Err(e) if status_code(&e) == Some(410) => {
                    tracing::info!("watch {what}: version {version} is gone: relisting");
                    continue 'relist;
                }
                Err(e) => {
                    tracing::warn!("watch {what}: {}", crate::cri::error::chain(&e));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                backoff = MIN_BACKOFF;
                let change = match event {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                        version = o.resource_version().unwrap_or(version);
                        Change::Applied(o)
                    }
                    Ok(WatchEvent::Deleted(o)) => {
                        version = o.resource_version().unwrap_or(version);
                        Change::Deleted(o)
                    }
                    Ok(WatchEvent::Bookmark(b)) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    Ok(WatchEvent::Error(s)) if s.code == 410 => {
                        tracing::info!("watch {what}: {}: relisting", s.message);
                        continue 'relist;
                    }
                    Ok(WatchEvent::Error(s)) => {
                        tracing::warn!("watch {what}: {}", s.message);
                        break;
                    }
                    Err(e) => {
                        // The connection broke: resume from `version`.
                        tracing::info!("watch {what} ended: {}", crate::cri::error::chain(&e));
                        break;
                    }
                };
                if tx.send(change).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }
}
