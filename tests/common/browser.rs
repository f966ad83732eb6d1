//! A real browser for the page tests: Debian's `chromium`, headless, driven over the
//! DevTools protocol on a pipe (`--remote-debugging-pipe`: commands on its fd 3, answers
//! on its fd 4, each a JSON text ended by a NUL). It loads a page, evaluates script in it
//! (to read the DOM) and takes screenshots.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

pub struct Browser {
    child: Child,
    commands: File,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

impl Browser {
    /// Starts chromium with a window of `width` x `height` and opens `url` in it; `None`
    /// (and a line saying so) when chromium is not installed, which fails under
    /// `SIPLAB_REQUIRE_TOOLS=1`.
    pub fn open(url: &str, (width, height): (u32, u32)) -> Option<Browser> {
        if !super::have_tool("chromium") {
            return None;
        }
        let profile = tempfile::tempdir().expect("profile directory");
        let (cmd_read, cmd_write) = pipe();
        let (ans_read, ans_write) = pipe();
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-pipe",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only fcntl and dup2 run, which are async-signal-safe.
        // Both ends are first copied above fd 10, so that neither is fd 3 or 4 already
        // (dup2 onto itself would leave it close-on-exec) nor overwritten by the other.
        unsafe {
            command.pre_exec(move || {
                let (r, w) = (
                    libc::fcntl(cmd_read, libc::F_DUPFD, 10),
                    libc::fcntl(ans_write, libc::F_DUPFD, 10),
                );
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        // SAFETY: each descriptor came from pipe2 above and is owned by nothing else.
        let (commands, answers_file) = unsafe {
            libc::close(cmd_read);
            libc::close(ans_write);
            (File::from_raw_fd(cmd_write), File::from_raw_fd(ans_read))
        };
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers_file);
            let mut buf = Vec::new();
            while reader.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop_if(|b| *b == 0);
                if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                    && tx.send(v).is_err()
                {
                    return;
                }
                buf.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands,
            answers,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        browser.call("Page.enable", json!({}));
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        browser.call("Page.navigate", json!({ "url": url }));
        browser.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        );
        Some(browser)
    }

    /// Sends a command (to the page once attached) and waits for its answer.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut text = serde_json::to_vec(&msg).expect("JSON");
        text.push(0);
        self.commands.write_all(&text).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if answer["id"] == json!(id) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a script expression in the page (JSON-serialisable).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `condition` (a script expression) is true; panics after `within`.
    pub fn wait_for(&mut self, condition: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.eval(condition) == json!(true) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "not within {within:?}: {condition}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the element `selector` selects, all of it: the window is first made
    /// as large as the page, so that nothing is scrolled away or laid out anew.
    pub fn screenshot(&mut self, selector: &str, png: &Path) {
        let size = self
            .eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]");
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": false }),
        );
        let rect = self.eval(&format!(
            "(() => {{ const r = document.querySelector({sel}).getBoundingClientRect(); \
             return [r.x + window.scrollX, r.y + window.scrollY, r.width, r.height]; }})()",
            sel = json!(selector)
        ));
        let n = |i: usize| rect[i].as_f64().expect("a number");
        let shot = self.call(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "clip": { "x": n(0), "y": n(1), "width": n(2), "height": n(3), "scale": 1 },
            }),
        );
        let data = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("PNG data"))
            .expect("base64");
        if let Some(dir) = png.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(png, data).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
