//! Every Service of the cluster, listed and watched (what kubelet's
//! service informer keeps), for the service link environment variables
//! (`crate::pod::env::services`). The Node authorizer's `system:node` role
//! lets a node list and watch all Services.

use std::sync::atomic::Ordering;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt as _;
use kube::api::Api;
use tokio::sync::mpsc;

use super::ApiObjects;
use crate::node::reflect::{Change, reflect};

fn key(s: &Service) -> (String, String) {
    (s.namespace().unwrap_or_default(), s.name_any())
}

impl ApiObjects {
    /// Keep the Service cache in step with the apiserver (runs until the
    /// process ends).
    pub(super) async fn watch_services(self, client: kube::Client) {
        let (tx, mut rx) = mpsc::channel(16);
        let api: Api<Service> = Api::all(client);
        let reflector = reflect(api, String::new(), "services".into(), tx);
        let consume = async {
            while let Some(change) = rx.recv().await {
                let mut services = self.0.services.write().unwrap_or_else(|e| e.into_inner());
                match change {
                    Change::Listed(items) => {
                        *services = items.into_iter().map(|s| (key(&s), s)).collect();
                        self.0.services_synced.store(true, Ordering::SeqCst);
                    }
                    Change::Applied(s) => {
                        services.insert(key(&s), s);
                    }
                    Change::Deleted(s) => {
                        services.remove(&key(&s));
                    }
                }
            }
        };
        tokio::join!(reflector, consume);
    }
}
