//! Validation and unit conversions shared by the v1 and v2 resource writers.
//! Every error names the spec field it came from.

use super::CgroupError;

/// A planned write of `value` to a cgroup `file`, for the spec `field` that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub field: String,
    pub file: String,
    pub value: String,
}

impl Write {
    pub fn new(field: &str, file: impl Into<String>, value: impl Into<String>) -> Self {
        Write {
            field: field.to_string(),
            file: file.into(),
            value: value.into(),
        }
    }
}

/// A byte or count limit as runc reads it: 0 unset, -1 unlimited, positive a
/// value; anything else is refused.
pub fn limit(field: &str, v: i64) -> Result<Option<Limit>, CgroupError> {
    match v {
        0 => Ok(None),
        -1 => Ok(Some(Limit::Max)),
        v if v > 0 => Ok(Some(Limit::Value(v as u64))),
        v => Err(CgroupError::invalid(
            field,
            format!("{v} is negative (use -1 for unlimited)"),
        )),
    }
}

/// A limit after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Max,
    Value(u64),
}

impl Limit {
    /// As cgroup v2 files take it (`max` or the number).
    pub fn v2(self) -> String {
        match self {
            Limit::Max => "max".into(),
            Limit::Value(v) => v.to_string(),
        }
    }

    /// As cgroup v1 files take it (`-1` or the number).
    pub fn v1(self) -> String {
        match self {
            Limit::Max => "-1".into(),
            Limit::Value(v) => v.to_string(),
        }
    }
}

/// runc's conversion of cgroup v1 cpu.shares [2, 262144] to cgroup v2
/// cpu.weight [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.saturating_sub(2)) * 9999) / 262142
}

/// Check cpu.shares is in the kernel's range.
pub fn shares(field: &str, v: u64) -> Result<Option<u64>, CgroupError> {
    match v {
        0 => Ok(None),
        2..=262144 => Ok(Some(v)),
        v => Err(CgroupError::invalid(
            field,
            format!("{v} is outside [2, 262144]"),
        )),
    }
}

/// runc's conversion of blkio.weight [10, 1000] to io.weight [1, 10000].
pub fn blkio_weight_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

/// Check a blkio weight is in [10, 1000] (0 is unset).
pub fn blkio_weight(field: &str, w: u16) -> Result<Option<u16>, CgroupError> {
    match w {
        0 => Ok(None),
        10..=1000 => Ok(Some(w)),
        w => Err(CgroupError::invalid(
            field,
            format!("{w} is outside [10, 1000]"),
        )),
    }
}

/// cgroup v2 memory.swap.max from the spec's memory+swap total (runc's rules).
pub fn swap_v2(field: &str, swap: i64, limit: Option<i64>) -> Result<Option<Limit>, CgroupError> {
    let memory = limit.unwrap_or(0);
    if memory == -1 && swap == 0 {
        return Ok(Some(Limit::Max));
    }
    match swap {
        0 => return Ok(None),
        -1 => return Ok(Some(Limit::Max)),
        s if s < -1 => {
            return Err(CgroupError::invalid(
                field,
                format!("{s} is negative (use -1 for unlimited)"),
            ));
        }
        _ => {}
    }
    if memory <= 0 {
        return Err(CgroupError::invalid(
            field,
            "a swap limit needs linux.resources.memory.limit to be set",
        ));
    }
    if swap < memory {
        return Err(CgroupError::invalid(
            field,
            format!("memory+swap {swap} is below the memory limit {memory}"),
        ));
    }
    Ok(Some(Limit::Value((swap - memory) as u64)))
}

/// Check a cpuset list such as `0-3,6` (cpus or memory nodes).
pub fn cpuset_list(field: &str, s: &str) -> Result<Option<String>, CgroupError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    for part in s.split(',') {
        let ok = match part.split_once('-') {
            Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) => a <= b,
                _ => false,
            },
            None => part.parse::<u32>().is_ok(),
        };
        if !ok {
            return Err(CgroupError::invalid(
                field,
                format!("{s:?} is not a list like \"0-3,6\""),
            ));
        }
    }
    Ok(Some(s.to_string()))
}

/// Parse a hugepage size (`2MB`, `1GB`, `64KB`) into kB, as the kernel names
/// `/sys/kernel/mm/hugepages/hugepages-<kB>kB`.
pub fn hugepage_kb(field: &str, size: &str) -> Result<u64, CgroupError> {
    let bad = || {
        CgroupError::invalid(
            field,
            format!("{size:?} is not a page size like \"2MB\" or \"1GB\""),
        )
    };
    let (num, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "KB" => 1,
        "MB" => 1024,
        "GB" => 1024 * 1024,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(bad());
    }
    Ok(n * mult)
}

/// Check a device number from the spec fits the kernel's.
pub fn dev_number(field: &str, v: i64) -> Result<u32, CgroupError> {
    u32::try_from(v).map_err(|_| CgroupError::invalid(field, format!("{v} is not a device number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
        assert!(shares("f", 1).is_err());
        assert!(shares("f", 300000).is_err());
        assert_eq!(shares("f", 0).unwrap(), None);
    }

    #[test]
    fn blkio_weight_converts_like_runc() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert!(blkio_weight("f", 5).is_err());
    }

    #[test]
    fn limits_follow_runc_conventions() {
        assert_eq!(limit("f", 0).unwrap(), None);
        assert_eq!(limit("f", -1).unwrap(), Some(Limit::Max));
        assert_eq!(limit("f", 5).unwrap(), Some(Limit::Value(5)));
        let e = limit("linux.resources.memory.limit", -5).unwrap_err();
        assert!(
            e.to_string().starts_with("linux.resources.memory.limit: "),
            "{e}"
        );
    }

    #[test]
    fn swap_is_converted_to_v2_swap_only() {
        assert_eq!(
            swap_v2("f", 300, Some(100)).unwrap(),
            Some(Limit::Value(200))
        );
        assert_eq!(swap_v2("f", -1, Some(100)).unwrap(), Some(Limit::Max));
        assert_eq!(swap_v2("f", 0, Some(-1)).unwrap(), Some(Limit::Max));
        assert_eq!(swap_v2("f", 0, Some(100)).unwrap(), None);
        assert!(swap_v2("f", 50, Some(100)).is_err());
        assert!(swap_v2("f", 50, None).is_err());
        assert!(swap_v2("f", -7, Some(100)).is_err());
    }

    #[test]
    fn cpuset_lists_are_checked() {
        assert_eq!(cpuset_list("f", "0-3,6").unwrap().as_deref(), Some("0-3,6"));
        assert_eq!(cpuset_list("f", "").unwrap(), None);
        for bad in ["a", "3-1", "1,,2", "-1"] {
            assert!(cpuset_list("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hugepage_sizes_parse() {
        assert_eq!(hugepage_kb("f", "2MB").unwrap(), 2048);
        assert_eq!(hugepage_kb("f", "1GB").unwrap(), 1048576);
        assert_eq!(hugepage_kb("f", "64KB").unwrap(), 64);
        for bad in ["2mb", "MB", "2", "0MB", "2TB"] {
            assert!(hugepage_kb("f", bad).is_err(), "{bad}");
        }
    }
}
