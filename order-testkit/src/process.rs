//! Processes a test started, and everything they started in turn.

/// The processes whose parent is `parent` (from `/proc/<pid>/stat`).
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid ...": the command may hold spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// Every process below `root` (children, their children, ...), parents before children.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(parent) = next.pop() {
        for child in children_of(parent) {
            if !found.contains(&child) {
                found.push(child);
                next.push(child);
            }
        }
    }
    found
}

/// SIGKILL `root` and every process below it. The tree is frozen (SIGSTOP) from the top
/// down first, so that nothing in it starts a process or is re-parented away while it is
/// collected. A program killed with SIGKILL cannot end what it started (chromedriver's
/// Chromium, for one), which then outlives the test unless it is ended here.
pub fn kill_tree(root: u32) {
    let signal = |pid: u32, signal: &str| {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .stderr(std::process::Stdio::null())
            .status();
    };
    signal(root, "STOP");
    let mut tree = Vec::new();
    let mut next = vec![root];
    while let Some(parent) = next.pop() {
        for child in children_of(parent) {
            if !tree.contains(&child) {
                signal(child, "STOP");
                tree.push(child);
                next.push(child);
            }
        }
    }
    for pid in tree.into_iter().rev() {
        signal(pid, "KILL");
    }
    signal(root, "KILL");
}
