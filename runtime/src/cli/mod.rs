//! The runc-compatible command line: global flags and the command table here,
//! the parser in `args`, one module per command.

mod args;
mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod run;
mod spec;
mod start;
mod state;
mod update;

use std::fmt::Write as _;
use std::path::PathBuf;

use args::{Flag, HELP, Kind, Matches, UsageError, Words, switch, value};

use crate::state::Store;

/// The global flags: before the command or, as with clap's `global`, after it.
const GLOBAL: &[Flag] = &[
    value(
        "root",
        0,
        "Root directory for the containers' state (default /run/husk)",
    ),
    value(
        "log",
        0,
        "Log file (errors and warnings are also written there)",
    ),
    value("log-format", 0, "Log format: text or json (default text)"),
    switch("debug", 0, "Debug logging"),
    switch(
        "systemd-cgroup",
        0,
        "Use systemd for cgroups (not supported)",
    ),
    // Accepted for compatibility with runc; husk detects rootless mode itself.
    Flag {
        long: "rootless",
        short: 0,
        kind: Kind::Optional,
        help: "",
    },
    // Accepted for compatibility with runc (checkpointing is not supported).
    value("criu", 0, ""),
];

/// Flags only meaningful before the command.
const TOP: &[Flag] = &[HELP, switch("version", b'v', "Print the version")];

/// One command: its name, usage and flags.
struct Cmd {
    name: &'static str,
    alias: &'static str,
    about: &'static str,
    /// The positional arguments, for the usage line.
    usage: &'static str,
    flags: &'static [Flag],
    /// How many positional arguments (before the trailing ones).
    min: usize,
    max: usize,
    /// Everything after the first positional argument is passed through
    /// (exec's command, ps's options), as runc's `SkipArgReorder` does.
    trailing: bool,
}

const fn cmd(
    name: &'static str,
    about: &'static str,
    usage: &'static str,
    flags: &'static [Flag],
) -> Cmd {
    let n = if usage.is_empty() { 0 } else { 1 };
    Cmd {
        name,
        alias: "",
        about,
        usage,
        flags,
        min: n,
        max: n,
        trailing: false,
    }
}

const ID: &str = "<container-id>";

const COMMANDS: &[Cmd] = &[
    cmd(
        "create",
        "Create a container (its process waits for `start`)",
        ID,
        create::FLAGS,
    ),
    cmd("start", "Start a created container's process", ID, &[]),
    cmd("state", "Print a container's OCI state", ID, &[]),
    Cmd {
        max: 2,
        ..cmd(
            "kill",
            "Send a signal to a container's init (or every process with --all)",
            "<container-id> [signal (default SIGTERM)]",
            kill::FLAGS,
        )
    },
    cmd("delete", "Delete a container", ID, delete::FLAGS),
    cmd("run", "Create and start a container", ID, run::FLAGS),
    Cmd {
        alias: "ls",
        ..cmd("list", "List containers", "", list::FLAGS)
    },
    Cmd {
        trailing: true,
        ..cmd(
            "ps",
            "List a container's processes",
            "<container-id> [ps options (default -ef)]",
            ps::FLAGS,
        )
    },
    Cmd {
        trailing: true,
        ..cmd(
            "exec",
            "Run a process in a running container",
            "<container-id> [command [args...]]",
            exec::FLAGS,
        )
    },
    cmd("spec", "Write a default config.json", "", spec::FLAGS),
    cmd("features", "Print the runtime's OCI features", "", &[]),
    cmd("pause", "Suspend a container's processes", ID, &[]),
    cmd("resume", "Resume a paused container", ID, &[]),
    cmd(
        "update",
        "Change a running container's resource limits",
        ID,
        update::FLAGS,
    ),
    cmd(
        "events",
        "Print a container's resource statistics (and OOM events)",
        ID,
        events::FLAGS,
    ),
];

/// A parsed command line.
struct Cli {
    root: PathBuf,
    log: Option<PathBuf>,
    json: bool,
    debug: bool,
    systemd_cgroup: bool,
    command: Command,
}

enum Command {
    Create(create::Args),
    Start(start::Args),
    State(state::Args),
    Kill(kill::Args),
    Delete(delete::Args),
    Run(run::Args),
    List(list::Args),
    Ps(ps::Args),
    Exec(exec::Args),
    Spec(spec::Args),
    Features,
    Pause(pause::Args),
    Resume(pause::Args),
    Update(update::Args),
    Events(events::Args),
}

impl Command {
    /// Whether the command clones processes into a container (which then
    /// run husk's image until they exec).
    fn clones_into_container(&self) -> bool {
        matches!(
            self,
            Command::Create(_) | Command::Run(_) | Command::Exec(_)
        )
    }

    /// Fill in the fds the caller passed among those `--preserve-fds` names.
    fn record_passed_fds(&mut self) {
        let args = match self {
            Command::Create(a) => a,
            Command::Run(a) => &mut a.create,
            Command::Exec(a) => {
                a.passed_fds = passed(a.preserve_fds);
                return;
            }
            _ => return,
        };
        args.passed_fds = passed(args.preserve_fds);
    }
}

/// The open fds among 3..3+n.
fn passed(n: u32) -> Vec<std::os::fd::RawFd> {
    let end = 3i32.saturating_add(n.min(i32::MAX as u32 - 3) as i32);
    crate::sys::open_fds(3..end)
}

/// What to do: run a command, or print help or the version.
enum Action {
    Run(Box<Cli>),
    Print(String),
}

/// A usage error and the command it is about ("" for the global flags).
type Failure = (&'static str, UsageError);

/// Parse the command line, run the command, exit with its status.
pub fn main() -> ! {
    let argv: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| ("", UsageError(format!("argument {a:?} is not valid UTF-8"))))
        })
        .collect();
    let mut cli = match argv.and_then(parse) {
        Ok(Action::Run(cli)) => *cli,
        Ok(Action::Print(text)) => {
            print!("{text}");
            std::process::exit(0)
        }
        Err((cmd, e)) => {
            let sp = if cmd.is_empty() { "" } else { " " };
            eprintln!("husk: {e}\nRun 'husk{sp}{cmd} --help' for usage.");
            std::process::exit(1)
        }
    };
    // Nothing of this process may be read or traced by a container's process
    // (its memory, fds, exe), even where a husk process is in its reach.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if cli.command.clones_into_container() {
        if let Err(e) = crate::trampoline::protect_runtime_exe() {
            eprintln!("husk: run from a read-only view of the husk binary: {e}");
            std::process::exit(1)
        }
    }
    // Before husk opens anything: which of the fds --preserve-fds names the
    // caller really passed.
    cli.command.record_passed_fds();
    if let Err(e) = crate::logging::init(cli.log.as_deref(), cli.json, cli.debug) {
        eprintln!("husk: open log file: {e}");
    }
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            crate::logging::error(&format!("{e:#}"));
            1
        }
    };
    std::process::exit(code)
}

fn parse(argv: Vec<String>) -> Result<Action, Failure> {
    let mut words: Words = argv.into_iter().peekable();
    let mut m = Matches::default();
    args::parse(&mut words, &[GLOBAL, TOP], &mut m, 1).map_err(|e| ("", e))?;
    if m.on("help") {
        return Ok(Action::Print(help(None)));
    }
    if m.on("version") {
        return Ok(Action::Print(format!(
            "husk {}\n",
            env!("CARGO_PKG_VERSION")
        )));
    }
    // runc with no command prints its help and exits 0; so does husk.
    if m.pos.is_empty() {
        return Ok(Action::Print(help(None)));
    }
    let name = m
        .pos
        .pop()
        .ok_or(("", UsageError("no command given".into())))?;
    let find = |name: &str| {
        COMMANDS
            .iter()
            .find(|c| c.name == name || c.alias == name)
            .ok_or(("", UsageError(format!("unknown command {name:?}"))))
    };
    if name == "help" {
        // `husk help [command]`, as urfave/cli has it.
        return match words.next() {
            None => Ok(Action::Print(help(None))),
            Some(n) => Ok(Action::Print(help(Some(find(&n)?)))),
        };
    }
    let c = find(&name)?;
    let fail = |e| (c.name, e);
    let stop = if c.trailing { 1 } else { usize::MAX };
    args::parse(&mut words, &[c.flags, GLOBAL, &[HELP]], &mut m, stop).map_err(fail)?;
    if m.on("help") {
        return Ok(Action::Print(help(Some(c))));
    }
    if m.pos.len() < c.min {
        let what = c.usage.split(' ').next().unwrap_or(c.usage);
        return Err(fail(UsageError(format!("missing argument {what}"))));
    }
    if let Some(extra) = m.pos.get(c.max) {
        return Err(fail(UsageError(format!("unexpected argument {extra:?}"))));
    }
    if c.trailing {
        // Flags end at the container id; a `--` right after it is dropped.
        words.next_if(|w| w == "--");
        m.pos.extend(words);
    }
    let command = command(c.name, &m).map_err(fail)?;
    let json = match m.get("log-format").unwrap_or("text") {
        "text" => false,
        "json" => true,
        v => {
            let e = format!("--log-format: invalid value {v:?} (text or json)");
            return Err(("", UsageError(e)));
        }
    };
    Ok(Action::Run(Box::new(Cli {
        root: m.path("root").unwrap_or_else(|| "/run/husk".into()),
        log: m.path("log"),
        json,
        debug: m.on("debug"),
        systemd_cgroup: m.on("systemd-cgroup"),
        command,
    })))
}

/// Build command `name`'s arguments from what was parsed.
fn command(name: &str, m: &Matches) -> Result<Command, UsageError> {
    Ok(match name {
        "create" => Command::Create(create::Args::parse(m)?),
        "start" => Command::Start(start::Args::parse(m)),
        "state" => Command::State(state::Args::parse(m)),
        "kill" => Command::Kill(kill::Args::parse(m)),
        "delete" => Command::Delete(delete::Args::parse(m)),
        "run" => Command::Run(run::Args::parse(m)?),
        "list" => Command::List(list::Args::parse(m)),
        "ps" => Command::Ps(ps::Args::parse(m)),
        "exec" => Command::Exec(exec::Args::parse(m)?),
        "spec" => Command::Spec(spec::Args::parse(m)),
        "features" => Command::Features,
        "pause" => Command::Pause(pause::Args::parse(m)),
        "resume" => Command::Resume(pause::Args::parse(m)),
        "update" => Command::Update(update::Args::parse(m)?),
        "events" => Command::Events(events::Args::parse(m)?),
        other => return Err(UsageError(format!("unknown command {other:?}"))),
    })
}

/// The usage text: the command list, or one command's flags.
fn help(c: Option<&Cmd>) -> String {
    let mut out = String::new();
    match c {
        None => {
            out.push_str(concat!(
                "husk: an OCI container runtime with a runc-compatible CLI\n\n",
                "Usage: husk [global options] <command> [options] [arguments]\n\nCommands:\n"
            ));
            for c in COMMANDS {
                let alias = if c.alias.is_empty() { "" } else { ", " };
                let names = format!("{}{alias}{}", c.name, c.alias);
                let _ = writeln!(out, "  {names:<12}{}", c.about);
            }
            out.push_str("\nGlobal options:\n");
            args::describe(&mut out, GLOBAL);
            args::describe(&mut out, TOP);
        }
        Some(c) => {
            let sp = if c.usage.is_empty() { "" } else { " " };
            let (about, name, usage) = (c.about, c.name, c.usage);
            let _ = writeln!(
                out,
                "{about}\n\nUsage: husk {name} [options]{sp}{usage}\n\nOptions:"
            );
            args::describe(&mut out, c.flags);
            args::describe(&mut out, &[HELP]);
            out.push_str("\nGlobal options (see husk --help) may be given here too.\n");
        }
    }
    out
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    if cli.systemd_cgroup {
        anyhow::bail!(
            "--systemd-cgroup: systemd cgroup management is not supported by husk; use cgroupfs paths"
        );
    }
    let store = Store::new(&cli.root);
    match cli.command {
        Command::Create(a) => create::run(&store, a),
        Command::Start(a) => start::run(&store, a),
        Command::State(a) => state::run(&store, a),
        Command::Kill(a) => kill::run(&store, a),
        Command::Delete(a) => delete::run(&store, a),
        Command::Run(a) => run::run(&store, a),
        Command::List(a) => list::run(&store, a),
        Command::Ps(a) => ps::run(&store, a),
        Command::Exec(a) => exec::run(&store, a),
        Command::Spec(a) => spec::run(a),
        Command::Features => features::run(),
        Command::Pause(a) => pause::run(&store, a, true),
        Command::Resume(a) => pause::run(&store, a, false),
        Command::Update(a) => update::run(&store, a),
        Command::Events(a) => events::run(&store, a),
    }
}

#[cfg(test)]
mod tests;
