//! Processes a test started, and everything they started in turn.

/// `kill -<signal> <pid>`.
pub(crate) fn signal_pid(pid: u32, signal: &str) -> Result<(), String> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} {pid} failed"))
    }
}

/// The fields of `/proc/<pid>/stat` after the command name ("pid (comm) state ppid ...": the
/// command may hold spaces and parentheses); `None` when there is no such process.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    Some(after_comm.split_whitespace().map(str::to_owned).collect())
}

/// The processes whose parent is `parent`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let ppid: u32 = stat_fields(pid)?.get(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// Whether process `pid` has ended: gone, or a zombie waiting to be reaped.
pub fn has_ended(pid: u32) -> bool {
    stat_fields(pid)
        .is_none_or(|fields| matches!(fields.first().map(String::as_str), Some("Z" | "X")))
}

/// Every process below `root`, parents before children; `visit` sees each as it is found,
/// before its own children are looked up.
fn walk(root: u32, mut visit: impl FnMut(u32)) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(parent) = next.pop() {
        for child in children_of(parent) {
            if !found.contains(&child) {
                visit(child);
                found.push(child);
                next.push(child);
            }
        }
    }
    found
}

/// Every process below `root` (children, their children, ...), parents before children.
pub fn descendants(root: u32) -> Vec<u32> {
    walk(root, |_| {})
}

/// SIGKILL `root` and every process below it. The tree is frozen (SIGSTOP) from the top
/// down first, so that nothing in it starts a process or is re-parented away while it is
/// collected. A program killed with SIGKILL cannot end what it started (chromedriver's
/// Chromium, for one), which then outlives the test unless it is ended here. A process that
/// ended meanwhile is skipped.
pub fn kill_tree(root: u32) {
    let _ = signal_pid(root, "STOP");
    let tree = walk(root, |pid| {
        let _ = signal_pid(pid, "STOP");
    });
    for pid in tree.into_iter().rev() {
        let _ = signal_pid(pid, "KILL");
    }
    let _ = signal_pid(root, "KILL");
}
