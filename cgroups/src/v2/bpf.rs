//! The cgroup v2 device filter: a BPF_PROG_TYPE_CGROUP_DEVICE program built
//! from the device rules, loaded and attached with bpf(2).
//!
//! On update the new program is attached first and the old ones detached
//! afterwards, so there is no window without a filter and programs never pile
//! up (runc once leaked one per update until attach failed with E2BIG).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::CgroupError;
use crate::devices::Rule;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

// Opcodes used (see linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_X: u8 = 0xbc;
const ALU64_MOV_K: u8 = 0xb7;
const JNE_K: u8 = 0x55;
const JEQ_K: u8 = 0x15;
const JNE_X: u8 = 0x5d;
const EXIT: u8 = 0x95;

const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR

/// The program for `rules`: the last matching rule decides, no match denies.
///
/// Rules are checked last to first, one block each: checks that jump past the
/// block when the rule does not match, then the rule's verdict. A rule that
/// matches every access (no type, major or minor and all of "rwm", allowing or
/// denying) has no check, so its verdict ends the program: the rules before
/// it and the final deny are never reached, and are left out, since the
/// verifier refuses unreachable instructions (as runc and crun do).
///
/// Registers after the prologue: r2 device type, r3 requested access, r4
/// major, r5 minor (from `struct bpf_cgroup_dev_ctx`).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        let block = rule_block(r);
        let ends = block.iter().all(|&(_, jumps)| !jumps);
        // Each check jumps to the next block when the rule does not match.
        let len = block.len();
        for (i, (mut ins, jumps)) in block.into_iter().enumerate() {
            if jumps {
                ins.off = (len - i - 1) as i16;
            }
            p.push(ins);
        }
        if ends {
            return p;
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// The block for one rule: its checks (flagged true: their jump offsets are
/// set to the block's end) and its verdict.
fn rule_block(r: &Rule) -> Vec<(Insn, bool)> {
    let mut block: Vec<(Insn, bool)> = Vec::new();
    match r.kind {
        'b' => block.push((insn(JNE_K, 2, 0, 0, DEV_BLOCK), true)),
        'c' => block.push((insn(JNE_K, 2, 0, 0, DEV_CHAR), true)),
        _ => {}
    }
    // With all of "rwm", an allow covers every request and a deny meets every
    // one (the kernel always asks for at least one of them): no check.
    if r.access != crate::devices::ACC_ALL {
        block.push((insn(ALU32_MOV_X, 1, 3, 0, 0), false));
        block.push((insn(ALU32_AND_K, 1, 0, 0, r.access as i32), false));
        if r.allow {
            // Allow only when every requested bit is allowed.
            block.push((insn(JNE_X, 1, 3, 0, 0), true));
        } else {
            // Deny when any requested bit is denied.
            block.push((insn(JEQ_K, 1, 0, 0, 0), true));
        }
    }
    if let Some(m) = r.major {
        block.push((insn(JNE_K, 4, 0, 0, m as i32), true));
    }
    if let Some(m) = r.minor {
        block.push((insn(JNE_K, 5, 0, 0, m as i32), true));
    }
    block.push((insn(ALU64_MOV_K, 0, 0, 0, i32::from(r.allow)), false));
    block.push((insn(EXIT, 0, 0, 0, 0), false));
    block
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i64> {
    // SAFETY: attr is a live, properly sized #[repr(C)] bpf_attr prefix and
    // every pointer inside it refers to memory that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn err<'a>(dir: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |cause| CgroupError::Bpf {
        path: dir.to_path_buf(),
        op,
        cause,
    }
}

/// Load the program for `rules`; the verifier's log is part of the error.
fn load(dir: &Path, insns: &[Insn]) -> Result<OwnedFd, CgroupError> {
    let license = c"Apache";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new fd that we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let msg = String::from_utf8_lossy(&log[..end]).trim().to_string();
            Err(CgroupError::Bpf {
                path: dir.to_path_buf(),
                op: "load program",
                cause: io::Error::new(e.kind(), format!("{e}: {msg}")),
            })
        }
    }
}

/// The ids of the device programs attached to the cgroup at `dir`.
pub fn attached(dir: &Path) -> Result<Vec<u32>, CgroupError> {
    let cg = File::open(dir).map_err(err(dir, "open cgroup"))?;
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr).map_err(err(dir, "query attached programs"))?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

fn prog_id(dir: &Path, fd: &OwnedFd) -> Result<u32, CgroupError> {
    // The first fields of struct bpf_prog_info: type, id.
    let mut info = [0u32; 2];
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map_err(err(dir, "program info"))?;
    Ok(info[1])
}

/// Replace the cgroup's device filter with one built from `rules`.
pub fn install(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    let prog = load(dir, &program(rules))?;
    let new_id = prog_id(dir, &prog)?;
    let old = attached(dir)?;
    let cg = File::open(dir).map_err(err(dir, "open cgroup"))?;
    let mut attr = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(err(dir, "attach program"))?;
    for id in old.into_iter().filter(|&id| id != new_id) {
        let mut get = GetFdByIdAttr {
            prog_id: id,
            ..Default::default()
        };
        let fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
            // SAFETY: a successful BPF_PROG_GET_FD_BY_ID returns a new fd that we own.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
            // Detached and freed meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(err(dir, "open old program")(e)),
        };
        let mut det = AttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        match bpf(BPF_PROG_DETACH, &mut det) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(err(dir, "detach old program")(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{self, ACC_ALL, ACC_MKNOD, ACC_READ, ACC_WRITE};

    /// Run the program on one access with a tiny interpreter of the opcodes it uses.
    fn run(p: &[Insn], kind: i32, access: u32, major: u32, minor: u32) -> bool {
        let ctx = [((access << 16) | kind as u32), major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                ALU32_MOV_X => r[dst] = r[src] as u32 as u64,
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                JEQ_K if r[dst] == i.imm as i64 as u64 => pc += i.off as usize,
                JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JNE_K | JEQ_K | JNE_X => {}
                EXIT => return r[0] == 1,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn spec_rules(json: &str) -> Vec<Rule> {
        devices::rules(&serde_json::from_str::<Vec<_>>(json).unwrap()).unwrap()
    }

    #[test]
    fn program_agrees_with_the_rule_semantics() {
        let mut rules = spec_rules(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"c","major":10,"minor":200,"access":"rw"},
                {"allow":false,"type":"c","major":1,"minor":3,"access":"w"},
                {"allow":true,"type":"b","major":8,"access":"r"}]"#,
        );
        rules.extend(devices::runc_default_rules());
        let p = program(&rules);
        for kind in [(DEV_CHAR, 'c'), (DEV_BLOCK, 'b')] {
            for (maj, min) in [(1, 3), (1, 5), (10, 200), (8, 0), (8, 1), (136, 4), (7, 7)] {
                for acc in 1..=7 {
                    assert_eq!(
                        run(&p, kind.0, acc, maj, min),
                        devices::decide(&rules, kind.1, maj, min, acc),
                        "{}{maj}:{min} access {acc}",
                        kind.1
                    );
                }
            }
        }
        assert!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3));
        assert!(!run(&p, DEV_CHAR, ACC_READ, 7, 7));
        assert!(run(&p, DEV_CHAR, ACC_MKNOD, 7, 7));
        assert!(run(&p, DEV_BLOCK, ACC_READ, 8, 1));
        assert!(!run(&p, DEV_BLOCK, ACC_WRITE, 8, 1));
    }

    /// Every instruction is reachable from the first (the verifier's "unreachable
    /// insn"), every jump lands inside the program and the last one exits
    /// (its "jump out of range" and "fall-through").
    fn assert_well_formed(p: &[Insn]) {
        let mut seen = vec![false; p.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            assert!(pc < p.len(), "control leaves the program at {pc}: {p:?}");
            if std::mem::replace(&mut seen[pc], true) {
                continue;
            }
            match p[pc].code {
                EXIT => {}
                JNE_K | JEQ_K | JNE_X => {
                    todo.push(pc + 1);
                    todo.push(pc + 1 + p[pc].off as usize);
                }
                _ => todo.push(pc + 1),
            }
        }
        if let Some(pc) = seen.iter().position(|s| !s) {
            panic!("instruction {pc} is unreachable: {p:?}");
        }
    }

    /// The program is well formed and decides as `devices::decide` for every
    /// access to a set of devices that meets every rule used below.
    fn assert_agrees(rules: &[Rule]) {
        let p = program(rules);
        assert_well_formed(&p);
        for kind in [(DEV_CHAR, 'c'), (DEV_BLOCK, 'b')] {
            for (maj, min) in [(1, 3), (1, 5), (10, 200), (8, 0), (8, 1), (136, 4), (7, 7)] {
                for acc in 1..=7 {
                    assert_eq!(
                        run(&p, kind.0, acc, maj, min),
                        devices::decide(rules, kind.1, maj, min, acc),
                        "{}{maj}:{min} access {acc} under {rules:?}",
                        kind.1
                    );
                }
            }
        }
    }

    const ALLOW_ALL: &str = r#"{"allow":true,"access":"rwm"}"#;
    const DENY_ALL: &str = r#"{"allow":false,"access":"rwm"}"#;

    /// What containerd sends for a privileged container, inside the policy
    /// every container gets (deny-all first, the defaults last).
    #[test]
    fn an_allow_all_in_the_middle_ends_the_program() {
        let rules = devices::container_rules(Some(
            &serde_json::from_str::<Vec<_>>(&format!("[{ALLOW_ALL}]")).unwrap(),
        ))
        .unwrap();
        assert_agrees(&rules);
        let p = program(&rules);
        // The defaults' blocks, then the allow-all's verdict: nothing after.
        assert_eq!(
            &p[p.len() - 2..],
            &[insn(ALU64_MOV_K, 0, 0, 0, 1), insn(EXIT, 0, 0, 0, 0)]
        );
        for (kind, maj, min) in [(DEV_BLOCK, 8, 0), (DEV_CHAR, 7, 7), (DEV_CHAR, 1, 3)] {
            assert!(run(&p, kind, ACC_ALL, maj, min));
        }
    }

    #[test]
    fn an_allow_all_last_allows_everything() {
        let rules = spec_rules(&format!(
            r#"[{DENY_ALL}, {{"allow":false,"type":"b","major":8,"access":"r"}}, {ALLOW_ALL}]"#
        ));
        assert_agrees(&rules);
        assert_eq!(program(&rules).len(), 8, "prologue and the allow-all only");
    }

    #[test]
    fn a_deny_all_after_allows_ends_the_program_denying() {
        let rules = spec_rules(&format!(
            r#"[{ALLOW_ALL}, {{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}},
                {DENY_ALL}, {{"allow":true,"type":"b","major":8,"minor":1,"access":"r"}}]"#
        ));
        assert_agrees(&rules);
        let p = program(&rules);
        assert!(!run(&p, DEV_CHAR, ACC_READ, 1, 3));
        assert!(run(&p, DEV_BLOCK, ACC_READ, 8, 1));
        assert!(!run(&p, DEV_BLOCK, ACC_WRITE, 8, 1));
    }

    /// Wildcards with part of "rwm" check the access, so later (earlier in the
    /// list) rules still decide the rest.
    #[test]
    fn partial_access_wildcards_fall_through() {
        for w in [
            r#"{"allow":true,"access":"rw"}"#,
            r#"{"allow":true,"access":"m"}"#,
            r#"{"allow":false,"access":"w"}"#,
            r#"{"allow":true,"type":"c","access":"rwm"}"#,
            r#"{"allow":false,"type":"b","access":"rwm"}"#,
        ] {
            let rules = spec_rules(&format!(
                r#"[{DENY_ALL}, {{"allow":true,"type":"b","major":8,"access":"rwm"}}, {w}]"#
            ));
            assert_agrees(&rules);
        }
        let rules = spec_rules(&format!(r#"[{ALLOW_ALL}, {{"allow":false,"access":"w"}}]"#));
        let p = program(&rules);
        assert!(run(&p, DEV_BLOCK, ACC_READ | ACC_MKNOD, 8, 0));
        assert!(!run(&p, DEV_BLOCK, ACC_READ | ACC_WRITE, 8, 0));
    }

    /// Many rule lists drawn from rules that meet the probes in every way,
    /// wildcards among them: each program is well formed and agrees.
    #[test]
    fn generated_rule_lists_are_well_formed_and_agree() {
        let pool = spec_rules(&format!(
            r#"[{ALLOW_ALL}, {DENY_ALL},
                {{"allow":true,"access":"rw"}}, {{"allow":false,"access":"m"}},
                {{"allow":true,"type":"c","access":"rwm"}}, {{"allow":false,"type":"b","access":"r"}},
                {{"allow":true,"type":"b","major":8,"access":"rwm"}},
                {{"allow":false,"type":"c","major":1,"minor":3,"access":"w"}},
                {{"allow":true,"type":"c","major":10,"minor":200,"access":"rw"}},
                {{"allow":true,"major":7,"minor":7,"access":"rwm"}}]"#
        ));
        // A fixed linear congruential sequence: the same lists on every run.
        let mut seed = 0x2545_f491_u64;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for _ in 0..300 {
            let len = next(7);
            let rules: Vec<Rule> = (0..len).map(|_| pool[next(pool.len())]).collect();
            assert_agrees(&rules);
        }
    }

    #[test]
    fn empty_rules_deny_everything() {
        let p = program(&[]);
        assert!(!run(&p, DEV_CHAR, ACC_READ, 1, 3));
    }
}
