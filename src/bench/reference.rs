//! The Python reference of the policy benchmarks (models/bench_reference.py) as a child process:
//! located in the project's virtual environment, started under what the benchmark thread was
//! granted (`chrt`, `taskset`, locked memory) so that both sides of a ratio run alike, and either
//! run to its end or served (it plans when asked, so its blocks can alternate with locod's).
//!
//! Not for: what is measured (see `policy`).

use crate::rt::thread::RtOutcome;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// What the benchmark thread runs under; the Python reference is started under the same.
pub struct Granted {
    pub rt: RtOutcome,
    /// `None`: not asked for ([loop] lock_memory = false).
    pub locked: Option<Result<(), String>>,
}

impl std::fmt::Display for Granted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.rt)?;
        match &self.locked {
            Some(Ok(())) => write!(f, ", memory locked"),
            Some(Err(e)) => write!(f, ", memory not locked ({e})"),
            None => Ok(()),
        }
    }
}

/// Where to find the Python reference.
#[derive(Clone, Debug)]
pub struct Reference {
    pub python: PathBuf,
    pub script: PathBuf,
}

impl Reference {
    /// `$LOCOD_PYTHON`, else the project's `.venv` (from the working directory or the source
    /// tree), else `python3`; the script from `models/` likewise.
    pub(crate) fn locate() -> Reference {
        let roots = [PathBuf::from("."), PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
        let python = std::env::var_os("LOCOD_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
            roots.iter().map(|r| r.join(".venv/bin/python")).find(|p| p.is_file()).unwrap_or("python3".into())
        });
        let script = roots
            .iter()
            .map(|r| r.join("models/bench_reference.py"))
            .find(|p| p.is_file())
            .unwrap_or("models/bench_reference.py".into());
        Reference { python, script }
    }

    /// The script under what the benchmark thread was granted (`chrt`, `taskset`, `--mlockall`),
    /// so both sides of a ratio run alike.
    fn command(&self, granted: &Granted, args: &[String]) -> Command {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(Ok(p)) = &granted.rt.fifo {
            argv.extend(["chrt".into(), "-f".into(), p.to_string().into()]);
        }
        if let Some(Ok(c)) = &granted.rt.affinity {
            argv.extend(["taskset".into(), "-c".into(), c.to_string().into()]);
        }
        argv.push(self.python.clone().into());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).arg(&self.script).args(args);
        if let Some(Ok(())) = granted.locked {
            cmd.arg("--mlockall");
        }
        cmd
    }

    /// Runs the script to its end and returns the JSON it printed last.
    pub fn run(&self, granted: &Granted, args: &[String]) -> Result<serde_json::Value, String> {
        let out = self
            .command(granted, args)
            .output()
            .map_err(|e| format!("cannot run the Python reference {}: {e}", self.python.display()))?;
        if !out.status.success() {
            return Err(format!("the Python reference failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().rev().find(|l| l.starts_with('{')).ok_or("the Python reference printed no JSON")?;
        serde_json::from_str(line).map_err(|e| format!("the Python reference's JSON: {e}"))
    }

    /// Starts the script with `--serve` and waits until it is ready.
    pub(crate) fn serve(&self, granted: &Granted, args: &[String]) -> Result<(Served, serde_json::Value), String> {
        let stderr_path = std::env::temp_dir().join(format!("locod-bench-reference-{}.log", std::process::id()));
        let stderr =
            std::fs::File::create(&stderr_path).map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
        let mut child = self
            .command(granted, args)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run the Python reference {}: {e}", self.python.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut served = Served { child, stdin, stdout, stderr_path };
        let ready = served.answer()?;
        Ok((served, ready))
    }
}

/// The Python reference planner as a child process that plans when asked (`--serve`), so that
/// its blocks of plans can alternate with locod's and both see the same machine.
pub(crate) struct Served {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Where its stderr goes (torch.profiler is chatty); quoted when it fails, removed on drop.
    stderr_path: PathBuf,
}

impl Served {
    fn answer(&mut self) -> Result<serde_json::Value, String> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).map_err(|e| format!("the Python reference: {e}"))?;
        if n == 0 {
            let _ = self.child.wait();
            let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            return Err(format!("the Python reference exited: {}", last.trim()));
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("the Python reference's JSON: {e}"))?;
        match v["error"].as_str() {
            Some(e) => Err(format!("the Python reference: {e}")),
            None => Ok(v),
        }
    }

    pub fn ask(&mut self, request: &str) -> Result<serde_json::Value, String> {
        writeln!(self.stdin, "{request}").map_err(|e| format!("the Python reference: {e}"))?;
        self.answer()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}
