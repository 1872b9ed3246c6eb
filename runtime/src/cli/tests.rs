//! Whole command lines through `parse`, as containerd, conmon and podman
//! write them.

use std::path::Path;
use std::time::Duration;

use super::{Action, Cli, Command, parse};

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

fn cli(line: &str) -> Cli {
    match parse(words(line)) {
        Ok(Action::Run(c)) => *c,
        Ok(Action::Print(t)) => panic!("{line}: printed {t}"),
        Err((_, e)) => panic!("{line}: {e}"),
    }
}

fn printed(line: &str) -> String {
    match parse(words(line)) {
        Ok(Action::Print(t)) => t,
        Ok(Action::Run(_)) => panic!("{line}: runs a command"),
        Err((_, e)) => panic!("{line}: {e}"),
    }
}

/// The error and the command its usage hint points at.
fn fails(line: &str) -> (String, &'static str) {
    match parse(words(line)) {
        Ok(_) => panic!("{line}: accepted"),
        Err((cmd, e)) => (e.0, cmd),
    }
}

#[test]
fn create_takes_every_flag_form() {
    let c = cli(
        "--root /r --log=/l -log-format json create -b /b --pid-file=/p \
         -console-socket /s --no-pivot --no-new-keyring -preserve-fds=2 c1",
    );
    assert_eq!(
        (c.root.as_path(), c.log.as_deref()),
        (Path::new("/r"), Some(Path::new("/l")))
    );
    assert!(c.json && !c.debug && !c.systemd_cgroup);
    let Command::Create(a) = c.command else {
        panic!("not create")
    };
    assert_eq!(a.bundle, Path::new("/b"));
    assert_eq!(a.pid_file.as_deref(), Some(Path::new("/p")));
    assert_eq!(a.console_socket.as_deref(), Some(Path::new("/s")));
    assert!(a.no_pivot);
    assert_eq!((a.preserve_fds, a.id.as_str()), (2, "c1"));
}

#[test]
fn defaults() {
    let c = cli("create c1");
    assert_eq!(c.root, Path::new("/run/husk"));
    assert!(c.log.is_none() && !c.json && !c.debug);
    let Command::Create(a) = c.command else {
        panic!("not create")
    };
    assert_eq!((a.bundle.as_path(), a.preserve_fds), (Path::new("."), 0));
    assert!(a.pid_file.is_none() && !a.no_pivot);
    let Command::List(a) = cli("list").command else {
        panic!("not list")
    };
    assert_eq!((a.format.as_str(), a.quiet), ("table", false));
    let Command::Kill(a) = cli("kill c1").command else {
        panic!("not kill")
    };
    assert_eq!((a.signal.as_str(), a.all), ("SIGTERM", false));
    let Command::Events(a) = cli("events c1").command else {
        panic!("not events")
    };
    assert_eq!((a.interval, a.stats), (Duration::from_secs(5), false));
    let Command::Spec(a) = cli("spec").command else {
        panic!("not spec")
    };
    assert_eq!(a.bundle, Path::new("."));
}

#[test]
fn global_flags_after_the_command_and_compat_flags() {
    let c = cli("list --root /x --log-format json --debug -q --systemd-cgroup");
    assert_eq!(c.root, Path::new("/x"));
    assert!(c.json && c.debug && c.systemd_cgroup);
    let Command::List(a) = c.command else {
        panic!("not list")
    };
    assert!(a.quiet);
    assert!(matches!(cli("ls -f json").command, Command::List(a) if a.format == "json"));
    for line in [
        "--rootless create c1",
        "--rootless=false --criu /usr/sbin/criu create c1",
        "--rootless true create c1",
        "create --rootless auto c1",
    ] {
        assert!(
            matches!(cli(line).command, Command::Create(a) if a.id == "c1"),
            "{line}"
        );
    }
}

#[test]
fn exec_passes_everything_after_the_id() {
    let Command::Exec(a) = cli("exec c1 ls -la --root /y").command else {
        panic!("not exec")
    };
    assert_eq!(
        (a.id.as_str(), a.command.as_slice()),
        ("c1", &words("ls -la --root /y")[..])
    );
    let line = "--root /r exec -t -d -e A=1 --env=B=2 -u 1:2 -g 3 --additional-gids 4 \
                --cap CAP_X -c CAP_Y --cwd /w --no-new-privs --preserve-fds 1 \
                --process-label l --apparmor p c1 -- sh -c x";
    let c = cli(line);
    assert_eq!(c.root, Path::new("/r"));
    let Command::Exec(a) = c.command else {
        panic!("not exec")
    };
    assert!(a.tty && a.detach && a.no_new_privs);
    assert_eq!((a.env, a.cap), (words("A=1 B=2"), words("CAP_X CAP_Y")));
    assert_eq!(
        (a.user.as_deref(), a.additional_gids),
        (Some("1:2"), vec![3, 4])
    );
    assert_eq!(
        (a.cwd.as_deref(), a.preserve_fds),
        (Some(Path::new("/w")), 1)
    );
    assert_eq!(a.command, words("sh -c x"));
    let Command::Exec(a) = cli("exec -dt -p /p.json c1").command else {
        panic!("not exec")
    };
    assert!(a.tty && a.detach && a.command.is_empty());
    assert_eq!(a.process.as_deref(), Some(Path::new("/p.json")));
    assert_eq!(
        fails("exec -g x c1 true"),
        (r#"--additional-gids: invalid number "x""#.into(), "exec")
    );
    assert_eq!(
        fails("exec"),
        ("missing argument <container-id>".into(), "exec")
    );
}

#[test]
fn ps_kill_and_the_id_only_commands() {
    let Command::Ps(a) = cli("ps -f json c1 -o pid").command else {
        panic!("not ps")
    };
    assert_eq!((a.format.as_str(), a.id.as_str()), ("json", "c1"));
    assert_eq!(a.ps_args, words("-o pid"));
    let Command::Kill(a) = cli("kill c1 KILL -a").command else {
        panic!("not kill")
    };
    assert_eq!(
        (a.id.as_str(), a.signal.as_str(), a.all),
        ("c1", "KILL", true)
    );
    assert!(matches!(cli("delete -f c1").command, Command::Delete(a) if a.force && a.id == "c1"));
    assert!(matches!(cli("start c1").command, Command::Start(a) if a.id == "c1"));
    assert!(matches!(cli("state c1").command, Command::State(a) if a.id == "c1"));
    assert!(matches!(cli("pause c1").command, Command::Pause(a) if a.id == "c1"));
    assert!(matches!(cli("resume c1").command, Command::Resume(a) if a.id == "c1"));
    assert!(matches!(cli("features").command, Command::Features));
    let Command::Run(a) = cli("run -d --keep -b /b c1").command else {
        panic!("not run")
    };
    assert!(a.detach && a.keep && a.create.bundle == Path::new("/b"));
}

#[test]
fn update_and_events_values() {
    let line = "update -r - --memory -1 --memory-swap=2g --cpu-quota -1 --cpu-shares 512 \
                --cpu-period 100000 --cpuset-cpus 0-1 --pids-limit=-1 --blkio-weight 500 c1";
    let Command::Update(a) = cli(line).command else {
        panic!("not update")
    };
    assert_eq!(a.resources.as_deref(), Some(Path::new("-")));
    assert_eq!(
        (a.memory.as_deref(), a.memory_swap.as_deref()),
        (Some("-1"), Some("2g"))
    );
    assert_eq!(
        (a.cpu_quota, a.cpu_shares, a.cpu_period),
        (Some(-1), Some(512), Some(100000))
    );
    assert_eq!((a.pids_limit, a.blkio_weight), (Some(-1), Some(500)));
    assert_eq!(
        (a.cpuset_cpus.as_deref(), a.cpuset_mems),
        (Some("0-1"), None)
    );
    let (e, _) = fails("update --blkio-weight 70000 c1");
    assert_eq!(e, r#"--blkio-weight: invalid number "70000""#);
    let Command::Events(a) = cli("events --interval=500ms --stats c1").command else {
        panic!("not events")
    };
    assert_eq!((a.interval, a.stats), (Duration::from_millis(500), true));
    assert!(
        fails("events --interval x c1")
            .0
            .starts_with("--interval: ")
    );
}

#[test]
fn help_and_version() {
    let version = format!("husk {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(printed("-v"), version);
    assert_eq!(printed("--version"), version);
    for line in ["-h", "--help", "help", "--root /x -h list"] {
        let t = printed(line);
        assert!(
            t.contains("  list, ls") && t.contains("--log-format value"),
            "{line}: {t}"
        );
    }
    for line in ["exec -h", "exec --help", "help exec", "--debug exec -h c1"] {
        let t = printed(line);
        assert!(
            t.contains("Usage: husk exec") && t.contains("-e, --env value"),
            "{line}: {t}"
        );
    }
    assert!(
        !printed("exec -h").contains("apparmor"),
        "hidden flags stay hidden"
    );
}

#[test]
fn no_command_prints_the_help_as_runc_does() {
    assert!(printed("").contains("Usage: husk"));
    assert!(printed("--root /x").contains("Commands:"));
}

#[test]
fn usage_errors_name_the_problem() {
    assert_eq!(
        fails("frobnicate c1"),
        (r#"unknown command "frobnicate""#.into(), "")
    );
    assert_eq!(fails("help frob"), (r#"unknown command "frob""#.into(), ""));
    assert_eq!(
        fails("--bogus list"),
        (r#"unknown flag "--bogus""#.into(), "")
    );
    assert_eq!(fails("list -v"), (r#"unknown flag "-v""#.into(), "list"));
    assert_eq!(
        fails("delete c1 c2"),
        (r#"unexpected argument "c2""#.into(), "delete")
    );
    assert_eq!(
        fails("features x"),
        (r#"unexpected argument "x""#.into(), "features")
    );
    assert_eq!(
        fails("kill"),
        ("missing argument <container-id>".into(), "kill")
    );
    assert_eq!(
        fails("create --bundle"),
        ("--bundle: missing value".into(), "create")
    );
    assert_eq!(
        fails("run --preserve-fds x c1"),
        (r#"--preserve-fds: invalid number "x""#.into(), "run")
    );
    assert_eq!(
        fails("--log-format xml list").0,
        r#"--log-format: invalid value "xml" (text or json)"#
    );
    assert_eq!(fails("create -d=yes c1").0, r#"unknown flag "-d=yes""#);
    assert_eq!(
        fails("run -d=yes c1").0,
        r#"--detach: invalid boolean "yes""#
    );
}
