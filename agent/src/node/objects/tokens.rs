//! Service account tokens from the TokenRequest API
//! (`POST serviceaccounts/<sa>/token`), bound to the pod: the Node
//! authorizer grants a node that only for pods bound to it.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

use super::ApiObjects;
use crate::pod::token::{Token, TokenKey, TokenSource};

/// The TokenRequest kubelet sends for `key`.
pub fn token_request(key: &TokenKey) -> TokenRequest {
    TokenRequest {
        spec: TokenRequestSpec {
            // No audience: the apiserver's own (`--api-audiences`).
            audiences: if key.audience.is_empty() {
                vec![]
            } else {
                vec![key.audience.clone()]
            },
            expiration_seconds: Some(key.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(key.pod_name.clone()),
                uid: Some(key.pod_uid.clone()),
            }),
        },
        ..Default::default()
    }
}

#[tonic::async_trait]
impl TokenSource for ApiObjects {
    async fn request(&self, key: &TokenKey) -> Result<Token, String> {
        let client = self
            .0
            .client
            .get()
            .cloned()
            .ok_or_else(|| "not connected to the control plane yet".to_string())?;
        let api: Api<ServiceAccount> = Api::namespaced(client, &key.namespace);
        let answer = api
            .create_token_request(
                &key.service_account,
                &PostParams::default(),
                &token_request(key),
            )
            .await
            .map_err(|e| {
                format!(
                    "TokenRequest for serviceaccount {}/{}: {}",
                    key.namespace,
                    key.service_account,
                    crate::cri::error::chain(&e)
                )
            })?;
        let status = answer.status.ok_or_else(|| {
            format!(
                "TokenRequest for serviceaccount {}/{}: no status in the answer",
                key.namespace, key.service_account
            )
        })?;
        let secs = status.expiration_timestamp.0.as_second();
        let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
        // The apiserver may shorten (or, with --service-account-extend-token-expiration,
        // lengthen) the lifetime: the answer's spec says what it granted.
        let ttl = answer
            .spec
            .expiration_seconds
            .unwrap_or(key.expiration_seconds);
        Ok(Token {
            token: status.token,
            expires,
            ttl: Duration::from_secs(ttl.max(0) as u64),
        })
    }
}
