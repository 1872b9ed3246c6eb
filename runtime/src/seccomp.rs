//! Seccomp filters built from the OCI `linux.seccomp` profile.
