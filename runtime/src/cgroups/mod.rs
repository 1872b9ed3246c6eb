//! Cgroup management: one `CgroupManager` per hierarchy layout (v2 unified, v1/hybrid).
