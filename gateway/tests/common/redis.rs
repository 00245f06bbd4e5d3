//! A real `redis-server` (Debian's package) for tests, on 127.0.0.1.

use gateway::state::{FailMode, RedisConfig};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A real `redis-server` on 127.0.0.1, stopped (and reaped) when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: PathBuf,
}

impl Redis {
    pub fn start(dir: &Path, extra: &[&str]) -> Redis {
        let bin = ["redis-server", "/usr/bin/redis-server", "/usr/sbin/redis-server"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
            .expect("redis-server is not installed: scripts/test installs it (apt-get install redis-server)");
        for _ in 0..5 {
            // redis-server cannot report a port it chose itself: take a free one.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(bin)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(dir)
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            for _ in 0..100 {
                if ping(port) {
                    return Redis {
                        child,
                        port,
                        _dir: dir.to_path_buf(),
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    pub fn config(&self, on_unavailable: FailMode) -> RedisConfig {
        RedisConfig {
            url: format!("redis://127.0.0.1:{}/0", self.port),
            key_prefix: "test:".into(),
            timeout_ms: 500,
            on_unavailable,
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One command over RESP, its first reply line.
pub fn redis_cmd(port: u16, args: &[&str]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while byte != [b'\n'] {
        s.read_exact(&mut byte).unwrap();
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap().trim_end().to_string()
}

pub fn ping(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
