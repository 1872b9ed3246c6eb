//! Field-by-field checks of a raw `linux.seccomp` object, so that an unknown
//! action or architecture is reported by its JSON path rather than as a
//! serde error with a line and column.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::SeccompError;

/// Check the raw `linux.seccomp` object of a config.json and parse it.
///
/// Errors name the field: `linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"`.
pub fn validate_json(seccomp: &Value) -> Result<LinuxSeccomp, SeccompError> {
    let root = "linux.seccomp";
    let obj = seccomp
        .as_object()
        .ok_or_else(|| SeccompError::invalid(root, "must be an object"))?;
    match obj.get("defaultAction") {
        None => {
            return Err(SeccompError::invalid(
                format!("{root}.defaultAction"),
                "is required",
            ));
        }
        Some(v) => enum_value::<LinuxSeccompAction>(v, &format!("{root}.defaultAction"), "action")?,
    }
    for (i, v) in array(obj.get("architectures"), &format!("{root}.architectures"))?
        .iter()
        .enumerate()
    {
        enum_value::<Arch>(v, &format!("{root}.architectures[{i}]"), "architecture")?;
    }
    for (i, v) in array(obj.get("flags"), &format!("{root}.flags"))?
        .iter()
        .enumerate()
    {
        enum_value::<LinuxSeccompFilterFlag>(v, &format!("{root}.flags[{i}]"), "flag")?;
    }
    for (i, call) in array(obj.get("syscalls"), &format!("{root}.syscalls"))?
        .iter()
        .enumerate()
    {
        let field = format!("{root}.syscalls[{i}]");
        let call = call
            .as_object()
            .ok_or_else(|| SeccompError::invalid(&field, "must be an object"))?;
        let names = call.get("names").and_then(Value::as_array).ok_or_else(|| {
            SeccompError::invalid(
                format!("{field}.names"),
                "must be an array of syscall names",
            )
        })?;
        if let Some(j) = names.iter().position(|n| !n.is_string()) {
            return Err(SeccompError::invalid(
                format!("{field}.names[{j}]"),
                "must be a string",
            ));
        }
        match call.get("action") {
            None => {
                return Err(SeccompError::invalid(
                    format!("{field}.action"),
                    "is required",
                ));
            }
            Some(v) => enum_value::<LinuxSeccompAction>(v, &format!("{field}.action"), "action")?,
        }
        for (k, arg) in array(call.get("args"), &format!("{field}.args"))?
            .iter()
            .enumerate()
        {
            let arg_field = format!("{field}.args[{k}]");
            let arg = arg
                .as_object()
                .ok_or_else(|| SeccompError::invalid(&arg_field, "must be an object"))?;
            for key in ["index", "value"] {
                if !arg.get(key).is_some_and(Value::is_u64) {
                    return Err(SeccompError::invalid(
                        format!("{arg_field}.{key}"),
                        "must be a non-negative integer",
                    ));
                }
            }
            match arg.get("op") {
                None => {
                    return Err(SeccompError::invalid(
                        format!("{arg_field}.op"),
                        "is required",
                    ));
                }
                Some(v) => {
                    enum_value::<LinuxSeccompOperator>(v, &format!("{arg_field}.op"), "operator")?
                }
            }
        }
    }
    serde_json::from_value(seccomp.clone()).map_err(|e| SeccompError::invalid(root, e.to_string()))
}

fn array<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a [Value], SeccompError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(SeccompError::invalid(field, "must be an array")),
    }
}

fn enum_value<T: DeserializeOwned>(v: &Value, field: &str, what: &str) -> Result<(), SeccompError> {
    let Some(s) = v.as_str() else {
        return Err(SeccompError::invalid(
            field,
            format!("{what} must be a string"),
        ));
    };
    serde_json::from_value::<T>(v.clone())
        .map(|_| ())
        .map_err(|_| SeccompError::invalid(field, format!("unknown {what} {s:?}")))
}
