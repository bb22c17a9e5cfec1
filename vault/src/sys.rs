//! What Lockbox asks of the operating system: starting tools in their own
//! process groups and stopping them, reacting to stop signals, asking the
//! kernel about processes, free space and the host name, and tuning the
//! allocator. Every `unsafe` of the workspace's libraries and binary lives
//! here (the workspace denies `unsafe_code` elsewhere); calls go through
//! `rustix`'s safe wrappers where one exists, and what remains (`_exit`,
//! `mallopt`) carries its SAFETY argument.
//!
//! Why process groups: a dump tool is often a tree (`sh -c 'pg_dump … |
//! gzip'`, a wrapper's `sleep`). Killing only the direct child leaves the
//! rest running and holding the dump pipe open. Each tool Lockbox starts is
//! the leader of its own group, so one `kill(-pgid)` reaches the whole tree,
//! and a terminal's Ctrl-C reaches Lockbox only: Lockbox then stops the
//! groups it started, records the run and exits itself.
//!
//! Why a guardian: if Lockbox is SIGKILLed (OOM killer, `kill -9`, a
//! daemon's last resort) nothing in it runs. Each group gets a tiny
//! `/bin/sh` watching a pipe whose write end only Lockbox holds; the kernel
//! closes that pipe when Lockbox dies, however it dies, and the guardian
//! then kills the group. (`PR_SET_PDEATHSIG` would reach the direct child
//! only, and fires when the spawning *thread* ends, not the process.)

#![allow(unsafe_code)]

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// How long a stopped group gets between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// How long after a stop signal the process may take to wind down on its
/// own (kill its tools, record the run, remove partial output) before the
/// signal thread does the essentials itself and exits. Long enough for the
/// pipeline to drain, short enough for a person at a terminal.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// The stop signal received, 0 while none.
static STOP: AtomicI32 = AtomicI32::new(0);

/// Process groups started through [`spawn_group`] and not yet released.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

type Hook = Box<dyn Fn() + Send>;

/// Last-resort work for a process that does not wind down in time after a
/// stop signal (see [`STOP_DEADLINE`]): record runs, remove partial files.
static ABORT_HOOKS: Mutex<Vec<(u64, Hook)>> = Mutex::new(Vec::new());
static NEXT_HOOK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What the CLI prints after "interrupted by SIGx: " (e.g. "no snapshot
/// written"); set by the command that is running.
static STOP_NOTE: Mutex<&'static str> = Mutex::new("stopped");

/// The run was stopped by a signal; nothing it was writing was published.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted by {}", signal_name(*.signal))]
pub struct Interrupted {
    /// The signal's number (e.g. 15 for SIGTERM).
    pub signal: i32,
}

impl Interrupted {
    /// [`ErrorClass::Interrupted`](crate::error::ErrorClass::Interrupted)
    /// with the signal's number.
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Interrupted {
            signal: self.signal,
        }
    }
}

/// `SIGINT`, `SIGTERM`, `SIGHUP`, `SIGKILL` or `SIGQUIT` by name, any other as
/// `signal N`, for messages.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        s => format!("signal {s}"),
    }
}

/// The stop signal received so far, if any.
pub fn stop_signal() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// `Err(Interrupted)` once a stop signal has arrived: long loops call it so
/// a stop ends them at the next step.
pub fn check_stop() -> Result<(), Interrupted> {
    match stop_signal() {
        None => Ok(()),
        Some(signal) => Err(Interrupted { signal }),
    }
}

/// Sets what a stop leaves behind, for the one line the CLI prints.
pub fn set_stop_note(note: &'static str) {
    *STOP_NOTE.lock().unwrap() = note;
}

/// What the running command says a stop leaves behind (see [`set_stop_note`]);
/// `stopped` until one is set.
pub fn stop_note() -> &'static str {
    *STOP_NOTE.lock().unwrap()
}

/// Makes SIGINT, SIGTERM and SIGHUP stop this process cleanly: the signal is
/// remembered ([`stop_signal`]), every process group started through
/// [`spawn_group`] is stopped (SIGINT, SIGKILL after [`TERM_GRACE`]), and
/// the work in progress notices through [`check_stop`] or its tool's death.
/// If the process is still alive [`STOP_DEADLINE`] later (or on a second
/// signal), the abort hooks run and it exits with 128 + the signal.
/// For one-shot commands; the daemon has its own shutdown.
pub fn install_stop_handler() -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if STOP
                    .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
                {
                    // A second signal: the person means it.
                    hard_exit(STOP.load(Ordering::SeqCst));
                }
                tracing::warn!(signal = %signal_name(signal), "stop requested; stopping the run");
                stop_all_groups();
                std::thread::spawn(move || {
                    std::thread::sleep(STOP_DEADLINE);
                    tracing::error!("the run did not stop in time; exiting");
                    hard_exit(signal);
                });
            }
        })?;
    Ok(())
}

/// Runs the abort hooks, prints the stop line and exits without unwinding.
fn hard_exit(signal: i32) -> ! {
    stop_all_groups_now();
    let hooks = std::mem::take(&mut *ABORT_HOOKS.lock().unwrap_or_else(|p| p.into_inner()));
    for (_, hook) in hooks {
        hook();
    }
    eprintln!(
        "error: interrupted by {}: {}",
        signal_name(signal),
        stop_note()
    );
    // SAFETY: _exit ends the process at once; no Rust state is used after.
    unsafe { libc::_exit(128 + signal) }
}

/// Registers work for a forced exit after a stop signal; returns a handle
/// for [`remove_abort_hook`].
pub fn add_abort_hook(hook: impl Fn() + Send + 'static) -> u64 {
    let id = NEXT_HOOK.fetch_add(1, Ordering::Relaxed);
    ABORT_HOOKS.lock().unwrap().push((id, Box::new(hook)));
    id
}

/// Unregisters the hook `id` from [`add_abort_hook`], once its work is done.
pub fn remove_abort_hook(id: u64) {
    ABORT_HOOKS.lock().unwrap().retain(|(i, _)| *i != id);
}

/// Removes `path` if the process is forced to exit (a partial output).
pub fn remove_on_abort(path: &Path) -> u64 {
    let path: PathBuf = path.to_path_buf();
    add_abort_hook(move || {
        let _ = std::fs::remove_file(&path);
    })
}

/// SIGINT first, as a terminal's Ctrl-C would send it: database clients
/// take it as "cancel", ask the server to stop the statement and exit
/// (psql, pg_dump and pg_restore send a cancel request; mariadb kills its
/// query), so the server side is not left running a dropped connection's
/// work. What is still alive [`TERM_GRACE`] later is killed.
fn stop_all_groups() {
    let groups = GROUPS.lock().unwrap().clone();
    for &pgid in &groups {
        signal_group(pgid, libc::SIGINT);
    }
    if groups.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        std::thread::sleep(TERM_GRACE);
        let still = GROUPS.lock().unwrap().clone();
        for pgid in groups.into_iter().filter(|g| still.contains(g)) {
            signal_group(pgid, libc::SIGKILL);
        }
    });
}

fn stop_all_groups_now() {
    let groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for pgid in groups {
        signal_group(pgid, libc::SIGKILL);
    }
}

/// Sends `signal` to every process of group `pgid`. Best effort: a group
/// that is already gone is no error.
pub fn signal_group(pgid: i32, signal: i32) {
    if pgid <= 1 {
        return; // never the whole session or every process
    }
    let (Some(pid), Some(sig)) = (
        rustix::process::Pid::from_raw(pgid),
        rustix::process::Signal::from_named_raw(signal),
    ) else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, sig);
}

/// A tool started as the leader of its own process group, watched by a
/// guardian that kills the group if Lockbox dies first.
pub struct GroupChild {
    /// The group's leader, the tool itself; its id is the group's id.
    pub child: Child,
    guardian: Option<Guardian>,
}

struct Guardian {
    process: Child,
    pipe: ChildStdin,
}

impl GroupChild {
    /// The process group's id (the leader's pid), for signalling the whole group.
    pub fn pgid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Kills the whole group at once (SIGKILL).
    pub fn kill_group(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(self.pgid(), libc::SIGKILL);
        }
    }

    /// Stops the group: SIGTERM, then SIGKILL after `grace`; waits for the
    /// leader and releases the group.
    pub fn terminate(&mut self, grace: Duration) -> io::Result<std::process::ExitStatus> {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(self.pgid(), libc::SIGTERM);
            let deadline = std::time::Instant::now() + grace;
            while std::time::Instant::now() < deadline {
                if self.child.try_wait()?.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.child.try_wait()?.is_none() {
                signal_group(self.pgid(), libc::SIGKILL);
            }
        }
        let status = self.child.wait()?;
        self.release();
        Ok(status)
    }

    /// After the leader has been reaped: kills what is left of its group (a
    /// tool's stray background process), then tells the guardian to stand
    /// down. The group's id cannot have been reused while any member lives.
    pub fn release(&mut self) {
        let pgid = self.pgid();
        signal_group(pgid, libc::SIGKILL);
        GROUPS.lock().unwrap().retain(|g| *g != pgid);
        if let Some(mut g) = self.guardian.take() {
            let _ = g.pipe.write_all(b"done\n");
            drop(g.pipe);
            let _ = g.process.wait();
        }
    }
}

/// Like [`Command::output`], with the tool in its own process group (see
/// [`spawn_group`]): a stop signal or Lockbox's death reaches it too.
pub fn output_in_group(cmd: &mut Command) -> io::Result<std::process::Output> {
    use std::io::Read;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut g = spawn_group(cmd)?;
    let mut out = g.child.stdout.take().expect("piped");
    let mut err = g.child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let mut stdout = Vec::new();
    let read = out.read_to_end(&mut stdout);
    let stderr = err_thread.join().unwrap_or_default();
    let status = g.child.wait()?;
    g.release();
    read?;
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        if self.guardian.is_some() {
            if matches!(self.child.try_wait(), Ok(None)) {
                signal_group(self.pgid(), libc::SIGKILL);
                let _ = self.child.wait();
            }
            self.release();
        }
    }
}

/// Starts `cmd` as the leader of a new process group, registered for stop
/// signals and watched by a guardian (see the module doc).
pub fn spawn_group(cmd: &mut Command) -> io::Result<GroupChild> {
    cmd.process_group(0);
    let child = cmd.spawn()?;
    let pgid = child.id() as i32;
    GROUPS.lock().unwrap().push(pgid);
    // The guardian reads one line; EOF (Lockbox gone) makes `read` fail and
    // the group is killed. Its own group, so a terminal's Ctrl-C does not
    // reach it.
    let guardian = Command::new("/bin/sh")
        .args([
            "-c",
            "read _ || kill -s KILL -- -\"$1\" 2>/dev/null",
            "lockbox-guard",
        ])
        .arg(pgid.to_string())
        // Nothing of Lockbox's environment (it may hold a password
        // variable); `read` and `kill` are shell builtins.
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
        .and_then(|mut p| {
            let pipe = p.stdin.take()?;
            Some(Guardian { process: p, pipe })
        });
    if guardian.is_none() {
        tracing::warn!(
            "could not start the guardian of a tool's process group (/bin/sh); if Lockbox \
             is killed, the tool may outlive it"
        );
    }
    Ok(GroupChild { child, guardian })
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`
/// field 22): with the pid, it names a process across pid reuse. `None`
/// for a process that is gone, zombies included (an orphan's zombie waits
/// for a reaper that, in a container, may never come).
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may contain spaces and ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the process `pid` that started at `start_ticks` still runs.
/// `None` when it cannot be told (no /proc).
pub fn process_alive(pid: u32, start_ticks: u64) -> Option<bool> {
    if !Path::new("/proc/self/stat").exists() {
        return None;
    }
    Some(process_start_ticks(pid) == Some(start_ticks))
}

/// Bytes available to this user in the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// This machine's host name (the kernel's node name, read once), or
/// `unknown`. Notifications, drill records and prune audits carry it.
pub fn host_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let name = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .trim()
            .to_string();
        if name.is_empty() {
            "unknown".into()
        } else {
            name
        }
    })
}

/// Bounds how much freed memory glibc keeps. Chunk buffers (0.5–8 MiB) are
/// allocated and freed on several threads. glibc raises its mmap threshold
/// to the largest block freed so far, after which such buffers are recycled
/// inside per-thread arenas and the peak RSS becomes the sum of every
/// arena's high-water mark: a pgbench day-2 backup peaked at 101–114 MiB
/// against the 100 MiB target. A fixed 1 MiB threshold hands large buffers
/// back to the kernel when freed (86–90 MiB there). Fixing it also fixes the
/// trim threshold at glibc's 128 KiB default, so the heap was shrunk after
/// nearly every free and refaulted (133 k minor faults per 1 GiB restore);
/// 8 MiB keeps that to 34 k with no change in peak RSS.
///
/// Call first thing in `main`, before any other thread exists.
pub fn bound_allocator_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning and takes no pointers;
    // the caller runs it before any other thread exists, so no allocation
    // races with the change.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// Names of every environment variable a loaded config says holds a
/// password (`password_env` of any source, notification secrets), so that
/// no tool, dump or restore side, inherits another's password: Lockbox
/// reads its own copy from its environment, a child never needs one.
static SECRET_ENV_NAMES: Mutex<std::collections::BTreeSet<String>> =
    Mutex::new(std::collections::BTreeSet::new());

/// Records the password variable names of a config (called when one loads;
/// names are only ever added, so a reload cannot un-hide a variable).
pub fn register_secret_env_names<'a>(names: impl IntoIterator<Item = &'a str>) {
    let mut set = SECRET_ENV_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    set.extend(names.into_iter().map(str::to_string));
}

/// Removes every registered password variable from a child's environment.
pub fn scrub_secret_env(cmd: &mut Command) {
    let set = SECRET_ENV_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    for name in set.iter() {
        cmd.env_remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_and_free_space_are_known() {
        assert!(!host_name().is_empty());
        assert!(free_bytes(Path::new("/")).is_some());
        assert!(free_bytes(Path::new("/nonexistent/lockbox")).is_none());
    }

    #[test]
    fn own_start_time_is_alive_and_a_wrong_one_is_not() {
        let pid = std::process::id();
        let start = process_start_ticks(pid).expect("own /proc entry");
        assert_eq!(process_alive(pid, start), Some(true));
        assert_eq!(process_alive(pid, start + 1), Some(false));
    }

    #[test]
    fn a_group_kill_reaches_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild.pid");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("sleep 60 & echo $! > {}; wait", marker.display()));
        let mut g = spawn_group(&mut cmd).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let grandchild: u32 = loop {
            if let Ok(t) = std::fs::read_to_string(&marker)
                && let Ok(p) = t.trim().parse()
            {
                break p;
            }
            assert!(std::time::Instant::now() < deadline, "no grandchild");
            std::thread::sleep(Duration::from_millis(10));
        };
        let start = process_start_ticks(grandchild).unwrap();
        g.terminate(Duration::from_secs(1)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(process_alive(grandchild, start), Some(false));
    }
}
