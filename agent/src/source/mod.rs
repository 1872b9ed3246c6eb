//! Pod sources (WIP).
