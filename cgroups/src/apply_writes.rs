//! Writing planned resource values, with errors that name the spec field.

use std::io::ErrorKind;
use std::path::Path;

use super::CgroupError;
use super::convert::Write;

/// Write each planned value into `dir`. A missing file means the host (or the
/// controllers delegated to this cgroup) cannot enforce the field.
pub fn write_all(dir: &Path, writes: &[Write]) -> Result<(), CgroupError> {
    for w in writes {
        write_one(dir, w)?;
    }
    Ok(())
}

/// Write one planned value (see [`write_all`]).
pub fn write_one(dir: &Path, w: &Write) -> Result<(), CgroupError> {
    let path = dir.join(&w.file);
    if !path.exists() {
        return Err(CgroupError::unsupported(
            &w.field,
            format!("{} does not exist", path.display()),
        ));
    }
    super::fs::write_existing(&path, &w.value).map_err(|cause| {
        if cause.kind() == ErrorKind::NotFound {
            CgroupError::unsupported(&w.field, format!("{} does not exist", path.display()))
        } else {
            CgroupError::Write {
                field: w.field.clone(),
                value: w.value.clone(),
                path,
                cause,
            }
        }
    })
}
