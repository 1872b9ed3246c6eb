//! `images`: PullImage, ImageStatus, ListImages, RemoveImage, N times.

use super::Outcome;
use crate::cleanup::Tracker;
use crate::client::{ClientError, CriClient};
use crate::stats::Timings;
use crate::timed;

pub async fn run(
    client: &CriClient,
    tracker: &Tracker,
    image: &str,
    count: usize,
) -> anyhow::Result<Outcome> {
    let mut c = client.clone();
    // Every timed pull must fetch the image: start without it, and put it back
    // at the end if the runtime had it (cleanup does, also on failure).
    if c.image_status(image).await?.is_some() {
        tracker.image_to_restore(image, true);
        c.remove_image(image).await?;
    }
    let mut t = Timings::default();
    for _ in 0..count {
        timed!(t, "PullImage", c.pull_image(image))?;
        tracker.image_pulled(image);
        let status = timed!(t, "ImageStatus", c.image_status(image))?;
        let Some(found) = status else {
            return Err(bad(
                "ImageStatus",
                image,
                "no image right after PullImage succeeded",
            )
            .into());
        };
        let all = timed!(t, "ListImages", c.list_images())?;
        if !all.iter().any(|i| i.id == found.id) {
            return Err(bad("ListImages", image, "the pulled image is not listed").into());
        }
        timed!(t, "RemoveImage", c.remove_image(image))?;
        tracker.image_removed(image);
        if c.image_status(image).await?.is_some() {
            return Err(bad(
                "ImageStatus",
                image,
                "the image is still there after RemoveImage",
            )
            .into());
        }
    }
    Ok(Outcome {
        ops: t.summaries(),
        ..Default::default()
    })
}

fn bad(rpc: &'static str, image: &str, reason: &str) -> ClientError {
    ClientError::BadResponse {
        rpc,
        object: format!("image {image}"),
        reason: reason.into(),
    }
}
