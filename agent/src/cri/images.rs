//! [`ImageService`] over the image store.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use super::error::CriError;
use super::record::now_ns;
use super::runtime::{Cri, blocking};
use super::service::{CriResult, ImageService};
use crate::image::{Credentials, ImageError, ImageRecord, PullOptions};

fn image_name(spec: Option<&cri::ImageSpec>, field: &str) -> Result<String, CriError> {
    match spec.map(|s| s.image.as_str()) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(CriError::invalid(field, "must not be empty")),
    }
}

fn to_cri(r: &ImageRecord, user: Option<&str>) -> cri::Image {
    let (uid, username) = match user.map(|u| u.split(':').next().unwrap_or("")) {
        Some(u) if !u.is_empty() => match u.parse::<i64>() {
            Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
            Err(_) => (None, u.to_string()),
        },
        _ => (None, String::new()),
    };
    cri::Image {
        id: r.id.to_string(),
        repo_tags: r.names.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: r.id.to_string(),
            ..Default::default()
        }),
        pinned: false,
    }
}

fn credentials(auth: Option<&cri::AuthConfig>) -> Option<Credentials> {
    let a = auth?;
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let c = Credentials {
        username: opt(&a.username),
        password: opt(&a.password),
        auth: opt(&a.auth),
        identity_token: opt(&a.identity_token),
        registry_token: opt(&a.registry_token),
    };
    (c != Credentials::default()).then_some(c)
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(&self, req: cri::ListImagesRequest) -> CriResult<cri::ListImagesResponse> {
        let store = self.images.clone();
        let want = req
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|s| !s.is_empty());
        blocking("list images", move || {
            let all = store.list()?;
            let keep = match &want {
                Some(w) => match store.status(w)? {
                    Some(r) => vec![r],
                    None => vec![],
                },
                None => all,
            };
            let images = keep
                .iter()
                .map(|r| {
                    let user = store
                        .inspect(&r.id.to_string())
                        .ok()
                        .and_then(|d| d.config.user);
                    to_cri(r, user.as_deref())
                })
                .collect();
            Ok(cri::ListImagesResponse { images })
        })
        .await
    }

    async fn image_status(
        &self,
        req: cri::ImageStatusRequest,
    ) -> CriResult<cri::ImageStatusResponse> {
        let name = image_name(req.image.as_ref(), "image.image")?;
        let store = self.images.clone();
        blocking("image status", move || {
            let Some(rec) = store.status(&name)? else {
                return Ok(cri::ImageStatusResponse::default());
            };
            let details = store.inspect(&rec.id.to_string())?;
            let mut info = HashMap::new();
            if req.verbose {
                let v = serde_json::to_string(&details)
                    .map_err(|e| CriError::internal("encode image info", e))?;
                info.insert("info".to_string(), v);
            }
            Ok(cri::ImageStatusResponse {
                image: Some(to_cri(&rec, details.config.user.as_deref())),
                info,
            })
        })
        .await
    }

    async fn pull_image(&self, req: cri::PullImageRequest) -> CriResult<cri::PullImageResponse> {
        let name = image_name(req.image.as_ref(), "image.image")?;
        let opts = PullOptions {
            credentials: credentials(req.auth.as_ref()),
            ..Default::default()
        };
        let store = self.images.clone();
        // Its own task: a client that goes away does not cut a pull in half.
        let rec = tokio::spawn(async move { store.pull(&name, &opts).await })
            .await
            .map_err(|e| CriError::internal("pull task", e))??;
        Ok(cri::PullImageResponse {
            image_ref: rec.id.to_string(),
        })
    }

    async fn remove_image(
        &self,
        req: cri::RemoveImageRequest,
    ) -> CriResult<cri::RemoveImageResponse> {
        let name = image_name(req.image.as_ref(), "image.image")?;
        // Created containers have no rootfs (the store's mark of use) until
        // they start: they hold their image here.
        let unlaunched: Vec<(String, String)> = self
            .state()
            .containers
            .values()
            .filter(|c| !c.launched)
            .map(|c| (c.image_id.clone(), c.id.clone()))
            .collect();
        let store = self.images.clone();
        let users_of = move |id: &crate::image::digest::Digest| -> Vec<String> {
            let id = id.to_string();
            unlaunched
                .iter()
                .filter(|(image, _)| *image == id)
                .map(|(_, c)| c.clone())
                .collect()
        };
        blocking("remove image", move || {
            match store.remove_unless_used(&name, &users_of) {
                // Removed already: RemoveImage is idempotent.
                Ok(_) | Err(ImageError::NotFound(_)) => Ok(cri::RemoveImageResponse {}),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn image_fs_info(
        &self,
        _req: cri::ImageFsInfoRequest,
    ) -> CriResult<cri::ImageFsInfoResponse> {
        let store = self.images.clone();
        blocking("image fs usage", move || {
            let u = store.fs_usage();
            let fs = cri::FilesystemUsage {
                timestamp: now_ns(),
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: store.fs_mountpoint().to_string_lossy().into_owned(),
                }),
                used_bytes: Some(cri::UInt64Value { value: u.bytes }),
                inodes_used: Some(cri::UInt64Value { value: u.inodes }),
            };
            Ok(cri::ImageFsInfoResponse {
                image_filesystems: vec![fs],
                container_filesystems: vec![],
            })
        })
        .await
    }
}
