//! From an OCI profile to a libseccomp filter, checked field by field.

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use super::SeccompError;
use super::load::{FILTER_FLAG_LOG, FILTER_FLAG_SPEC_ALLOW, FILTER_FLAG_TSYNC, SeccompProgram};

/// Highest errno a syscall can return (the kernel's MAX_ERRNO).
const MAX_ERRNO: u32 = 4095;
/// Syscalls take at most six arguments.
const MAX_ARG_INDEX: usize = 5;

/// Validate `seccomp` and compile it to a BPF program, ready to [`SeccompProgram::load`].
pub fn compile(seccomp: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    let default_action = action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "linux.seccomp.defaultAction",
        "linux.seccomp.defaultErrnoRet",
    )?;
    let flags = filter_flags(seccomp.flags().as_deref().unwrap_or_default())?;
    if seccomp.listener_path().is_some() {
        return Err(SeccompError::invalid(
            "linux.seccomp.listenerPath",
            "seccomp agents (SCMP_ACT_NOTIFY) are not supported by husk",
        ));
    }

    let mut ctx =
        ScmpFilterContext::new(default_action).map_err(|cause| SeccompError::Libseccomp {
            field: "linux.seccomp.defaultAction".into(),
            cause,
        })?;
    // no_new_privs belongs to process.noNewPrivileges, set by the caller.
    ctx.set_ctl_nnp(false)
        .map_err(|cause| SeccompError::Libseccomp {
            field: "linux.seccomp".into(),
            cause,
        })?;

    for (i, arch) in seccomp.architectures().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.architectures[{i}]");
        let arch = scmp_arch(*arch);
        ctx.add_arch(arch)
            .map_err(|cause| SeccompError::Libseccomp { field, cause })?;
    }

    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let rule_action = action(
            rule.action(),
            rule.errno_ret(),
            &format!("{field}.action"),
            &format!("{field}.errnoRet"),
        )?;
        if rule.names().is_empty() {
            return Err(SeccompError::invalid(
                format!("{field}.names"),
                "no syscall names given",
            ));
        }
        let (conditions, repeated_arg) =
            conditions(rule.args().as_deref().unwrap_or_default(), &field)?;
        for (j, name) in rule.names().iter().enumerate() {
            let name_field = format!("{field}.names[{j}]");
            if name.is_empty() {
                return Err(SeccompError::invalid(name_field, "empty syscall name"));
            }
            // libseccomp refuses rules with the default action; they change nothing.
            if rule_action == default_action {
                continue;
            }
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "{name_field}: unknown syscall skipped");
                continue;
            };
            add_rule(&mut ctx, rule_action, syscall, &conditions, repeated_arg).map_err(
                |cause| SeccompError::Libseccomp {
                    field: format!("{name_field} ({name})"),
                    cause,
                },
            )?;
        }
    }

    SeccompProgram::export(&ctx, flags)
}

/// runc's rule: conditions on distinct arguments are ANDed in one rule;
/// several conditions on the same argument each get a rule of their own (OR),
/// as libseccomp cannot AND two comparisons of one argument.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    action: ScmpAction,
    syscall: ScmpSyscall,
    conditions: &[ScmpArgCompare],
    repeated_arg: bool,
) -> Result<(), libseccomp::error::SeccompError> {
    if conditions.is_empty() {
        ctx.add_rule(action, syscall)?;
    } else if repeated_arg {
        for c in conditions {
            ctx.add_rule_conditional(action, syscall, std::slice::from_ref(c))?;
        }
    } else {
        ctx.add_rule_conditional(action, syscall, conditions)?;
    }
    Ok(())
}

/// The rule's argument conditions, and whether some argument is compared more than once.
fn conditions(
    args: &[LinuxSeccompArg],
    field: &str,
) -> Result<(Vec<ScmpArgCompare>, bool), SeccompError> {
    let mut per_arg = [0usize; MAX_ARG_INDEX + 1];
    let conditions = args
        .iter()
        .enumerate()
        .map(|(k, arg)| {
            let index = arg.index();
            if index > MAX_ARG_INDEX {
                return Err(SeccompError::invalid(
                    format!("{field}.args[{k}].index"),
                    format!("argument index {index} is out of range (0..={MAX_ARG_INDEX})"),
                ));
            }
            let (op, datum) = match arg.op() {
                LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
                LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
                LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
                LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
                LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
                LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
                // `value` is the mask, `valueTwo` what the masked argument must equal.
                LinuxSeccompOperator::ScmpCmpMaskedEq => (
                    ScmpCompareOp::MaskedEqual(arg.value()),
                    arg.value_two().unwrap_or(0),
                ),
            };
            per_arg[index] += 1;
            Ok(ScmpArgCompare::new(index as u32, op, datum))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((conditions, per_arg.iter().any(|&n| n > 1)))
}

fn action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    field: &str,
    errno_field: &str,
) -> Result<ScmpAction, SeccompError> {
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActErrno => {
            let errno = errno_ret.unwrap_or(libc::EPERM as u32);
            if errno > MAX_ERRNO {
                return Err(SeccompError::invalid(
                    errno_field,
                    format!("errno {errno} is out of range (0..={MAX_ERRNO})"),
                ));
            }
            ScmpAction::Errno(errno as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            let msg = errno_ret.unwrap_or(libc::EPERM as u32);
            let msg = u16::try_from(msg).map_err(|_| {
                SeccompError::invalid(
                    errno_field,
                    format!("trace message {msg} is out of range (0..=65535)"),
                )
            })?;
            ScmpAction::Trace(msg)
        }
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::invalid(
                field,
                "SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath), which husk does not support",
            ));
        }
    })
}

fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> Result<u32, SeccompError> {
    let mut bits = 0;
    for (i, flag) in flags.iter().enumerate() {
        bits |= match flag {
            // The init is single-threaded; TSYNC is harmless and kept for fidelity.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(SeccompError::invalid(
                    format!("linux.seccomp.flags[{i}]"),
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only applies to SCMP_ACT_NOTIFY, \
                     which husk does not support",
                ));
            }
        };
    }
    Ok(bits)
}

fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}
