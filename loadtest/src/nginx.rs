//! nginx for `loadtest compare`: the configuration files of its two roles and running
//! them as child processes.
//!
//! - **Upstream**: serves a 100-byte file for every path (`/x` and `/bench/x` are real
//!   files; any other path, and any method other than GET and HEAD, get the same file
//!   through `error_page ... =200 /x`). Two ports: the *client* port (what the load
//!   generator calls directly; HTTP/2 with `--http2`) and the *proxied* port (what the
//!   nginx proxy and the gateway forward to; always HTTP/1.1, so both proxies speak the
//!   same protocol upstream).
//! - **Proxy**: a plain reverse proxy, no auth: `location /bench/` passes to the upstream's
//!   proxied port with `/bench` removed (as the gateway's `path_prefix` does), HTTP/1.1
//!   with a keep-alive pool, TLS verified against the work dir's CA when the upstream
//!   speaks TLS.
//!
//! Each role is its own nginx (one master, `worker_processes 1`), so it can be pinned and
//! measured apart. `access_log off` in both; errors go to `nginx-ROLE.error.log`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::mesh::{Proc, free_port, wait_for_port};

/// The body every upstream path answers with: 100 bytes.
pub const BODY: &[u8; 100] =
    b"loadtest upstream: a 100-byte body served by nginx for every path and method.......................\n";

/// What one nginx does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves [`BODY`] on `client_port` (for direct calls) and `proxied_port` (for the
    /// proxies; HTTP/1.1 only).
    Upstream {
        /// The port the load generator calls directly.
        client_port: u16,
        /// The port the nginx proxy and the gateway forward to.
        proxied_port: u16,
    },
    /// Passes `/bench/...` (each of `prefixes`) to the upstream's proxied port as `/...`.
    Proxy {
        /// The port the load generator calls.
        port: u16,
        /// The upstream's proxied port.
        upstream_port: u16,
        /// The path prefixes proxied and removed (`/bench`), as the gateway's
        /// `path_prefix` routes and removes them.
        prefixes: Vec<String>,
    },
}

impl Role {
    /// `upstream` or `proxy`: file names and messages.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Upstream { .. } => "upstream",
            Role::Proxy { .. } => "proxy",
        }
    }

    /// The port the load generator calls.
    pub fn client_port(&self) -> u16 {
        match self {
            Role::Upstream { client_port, .. } => *client_port,
            Role::Proxy { port, .. } => *port,
        }
    }
}

/// Everything an nginx configuration depends on.
#[derive(Clone, Debug)]
pub struct Conf {
    /// Upstream or proxy, with its ports.
    pub role: Role,
    /// TLS on every listener (and from the proxy to the upstream); plain HTTP otherwise.
    pub tls: bool,
    /// HTTP/2 on the client-facing listener (h2 by ALPN with TLS, prior knowledge without).
    pub http2: bool,
    /// The work dir: config, certificates, document root, logs, temp dirs.
    pub dir: PathBuf,
    /// Write `user root;` (nginx started as root would otherwise run its worker as
    /// `nobody`, who cannot read the work dir).
    pub as_root: bool,
    /// The nginx build (version, modules).
    pub build: Build,
    /// `worker_rlimit_nofile`: the open-file limit to raise the worker to (the hard
    /// limit, at most 65,536), when known.
    pub nofile: Option<u64>,
}

impl Conf {
    /// The nginx.conf text.
    pub fn render(&self) -> String {
        let dir = self.dir.display();
        let name = self.role.name();
        let mut out = format!(
            "# Written by `loadtest compare`: nginx as the {name} of the comparison.\n\
             daemon off;\n\
             master_process on;\n\
             worker_processes 1;\n\
             pid {dir}/nginx-{name}.pid;\n\
             error_log {dir}/nginx-{name}.error.log warn;\n"
        );
        if self.as_root {
            out.push_str("user root;\n");
        }
        if let Some(n) = self.nofile {
            let _ = writeln!(out, "worker_rlimit_nofile {n};");
        }
        out.push_str(
            "\nevents {\n    worker_connections 16384;\n}\n\nhttp {\n    access_log off;\n\
             \x20   default_type application/octet-stream;\n    sendfile on;\n    tcp_nodelay on;\n\
             \x20   server_tokens off;\n    client_max_body_size 64m;\n\
             \x20   # Connections stay open for the whole run (nginx's default closes them\n\
             \x20   # every 1,000 requests; the gateway does not).\n\
             \x20   keepalive_requests 100000000;\n    keepalive_timeout 300s;\n",
        );
        for directive in &self.build.temp_paths {
            let _ = writeln!(out, "    {directive} {dir}/nginx-{name}-temp/{directive};");
        }
        if self.tls {
            let _ = writeln!(
                out,
                "    ssl_certificate {dir}/server.pem;\n    ssl_certificate_key {dir}/server-key.pem;\n\
                 \x20   ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL:1m;"
            );
        }
        let ssl = if self.tls { " ssl" } else { "" };
        let (h2, h2_on) = match (self.http2, self.build.has_http2_directive()) {
            (false, _) => ("", ""),
            (true, false) => (" http2", ""),
            (true, true) => ("", "        http2 on;\n"),
        };
        match &self.role {
            Role::Upstream {
                client_port,
                proxied_port,
            } => {
                // Two servers: HTTP/2 (with --http2) only on the client port; the
                // proxies' port stays HTTP/1.1 whatever the nginx version.
                let body = format!(
                    "        root {dir}/www;\n\
                     \x20       # /x and /bench/x are files; anything else, and methods the\n\
                     \x20       # static module refuses, get /x too (as GET).\n\
                     \x20       error_page 404 405 =200 /x;\n"
                );
                let _ = write!(
                    out,
                    "\n    # what the load generator calls directly\n\
                     \x20   server {{\n\
                     \x20       listen 127.0.0.1:{client_port}{ssl}{h2};\n\
                     {h2_on}{body}\
                     \x20   }}\n\
                     \n    # what the nginx proxy and the gateway forward to\n\
                     \x20   server {{\n\
                     \x20       listen 127.0.0.1:{proxied_port}{ssl};\n\
                     {body}\
                     \x20   }}\n"
                );
            }
            Role::Proxy {
                port,
                upstream_port,
                prefixes,
            } => {
                let scheme = if self.tls { "https" } else { "http" };
                let _ = write!(
                    out,
                    "\n    upstream bench_upstream {{\n\
                     \x20       server 127.0.0.1:{upstream_port};\n\
                     \x20       keepalive 64;\n\
                     \x20       keepalive_requests 100000000;\n\
                     \x20       keepalive_timeout 300s;\n\
                     \x20   }}\n\
                     \n    server {{\n\
                     \x20       listen 127.0.0.1:{port}{ssl}{h2};\n{h2_on}"
                );
                for prefix in prefixes {
                    let _ = write!(
                        out,
                        "        location {prefix}/ {{\n\
                         \x20           proxy_pass {scheme}://bench_upstream/;\n\
                         \x20           proxy_http_version 1.1;\n\
                         \x20           proxy_set_header Connection \"\";\n"
                    );
                    if self.tls {
                        let _ = write!(
                            out,
                            "            proxy_ssl_trusted_certificate {dir}/ca.pem;\n\
                             \x20           proxy_ssl_verify on;\n\
                             \x20           proxy_ssl_name localhost;\n\
                             \x20           proxy_ssl_session_reuse on;\n"
                        );
                    }
                    out.push_str("        }\n");
                }
                out.push_str("    }\n");
            }
        }
        out.push_str("}\n");
        out
    }

    /// Where this role's config file goes.
    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("nginx-{}.conf", self.role.name()))
    }
}

/// What matters of an nginx build: its version and which temp-path directives it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Build {
    /// `nginx/1.22.1` as (1, 22, 1); (0, 0, 0) when unreadable.
    pub version: (u32, u32, u32),
    /// The temp-path directives it knows (`fastcgi_temp_path` only with the fastcgi
    /// module, ...). They all point into the work dir: the compiled-in defaults
    /// (`/var/lib/nginx/...`) need root.
    pub temp_paths: Vec<&'static str>,
}

impl Build {
    /// `-e FILE` (the error log before the config is read) exists from 1.19.5 on.
    pub fn has_error_log_option(&self) -> bool {
        self.version >= (1, 19, 5)
    }

    /// `http2 on;` replaces the `http2` listen parameter from 1.25.1 on.
    pub fn has_http2_directive(&self) -> bool {
        self.version >= (1, 25, 1)
    }
}

/// Runs `nginx -V` and reads the build.
pub fn probe(nginx: &Path) -> Result<Build, String> {
    let out = Command::new(nginx)
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| not_found(nginx, &e))?;
    // nginx -V prints to standard error.
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !text.contains("nginx version") {
        return Err(format!(
            "{} -V did not print an nginx version: {}",
            nginx.display(),
            text.trim()
        ));
    }
    Ok(build_of(&text))
}

/// The build `nginx -V` printed `text` about.
pub fn build_of(text: &str) -> Build {
    let mut temp_paths = vec!["client_body_temp_path", "proxy_temp_path"];
    for (module, directive) in [
        ("fastcgi", "fastcgi_temp_path"),
        ("uwsgi", "uwsgi_temp_path"),
        ("scgi", "scgi_temp_path"),
    ] {
        if !text.contains(&format!("--without-http_{module}_module")) {
            temp_paths.push(directive);
        }
    }
    let version = text
        .split_once("nginx/")
        .map(|(_, rest)| {
            let v: Vec<u32> = rest
                .split(|c: char| !c.is_ascii_digit() && c != '.')
                .next()
                .unwrap_or("")
                .split('.')
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            (at(0), at(1), at(2))
        })
        .unwrap_or((0, 0, 0));
    Build {
        version,
        temp_paths,
    }
}

fn not_found(nginx: &Path, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!(
            "nginx not found ({}): install it (`apt-get install nginx-light` on Debian or \
             Ubuntu) or give its path with --nginx",
            nginx.display()
        )
    } else {
        format!("cannot run {}: {e}", nginx.display())
    }
}

/// The hard open-file limit of this process (`/proc/self/limits`), at most 65,536:
/// what nginx (a child, with the same limits) can raise its worker to.
pub fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut words = line.trim_start_matches("Max open files").split_whitespace();
    let _soft = words.next()?;
    match words.next()? {
        "unlimited" => Some(65536),
        hard => hard.parse::<u64>().ok().map(|n| n.min(65536)),
    }
}

/// Writes the document root (`www/x` and `www/bench/x`, [`BODY`] each).
pub fn write_docroot(dir: &Path) -> Result<(), String> {
    let www = dir.join("www");
    let bench = www.join("bench");
    std::fs::create_dir_all(&bench)
        .map_err(|e| format!("cannot create {}: {e}", bench.display()))?;
    for file in [www.join("x"), bench.join("x")] {
        std::fs::write(&file, BODY).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    Ok(())
}

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    /// Its role and ports.
    pub role: Role,
    /// The config file it runs.
    pub conf_path: PathBuf,
    /// The master process.
    pub proc: Proc,
}

/// Writes `conf`, checks it with `nginx -t`, starts nginx (under `taskset -c CPU` when
/// `cpu` is given) and waits until its client port accepts connections.
pub async fn start(nginx: &Path, conf: &Conf, cpu: Option<usize>) -> Result<Nginx, String> {
    let name = conf.role.name();
    for directive in &conf.build.temp_paths {
        let d = conf.dir.join(format!("nginx-{name}-temp")).join(directive);
        std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let path = conf.path();
    std::fs::write(&path, conf.render())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let startup_log = conf.dir.join(format!("nginx-{name}.error.log"));
    let base_args = |cmd: &mut Command| {
        cmd.arg("-p")
            .arg(&conf.dir)
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null());
        if conf.build.has_error_log_option() {
            cmd.arg("-e").arg(&startup_log);
        }
    };
    let mut test = Command::new(nginx);
    base_args(&mut test);
    let out = test.arg("-t").output().map_err(|e| not_found(nginx, &e))?;
    if !out.status.success() {
        return Err(format!(
            "nginx ({name}) refuses its configuration {}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let mut cmd = crate::mesh::pinned(nginx, cpu);
    base_args(&mut cmd);
    let output = conf.dir.join(format!("nginx-{name}.out"));
    let proc = Proc::spawn(&format!("nginx ({name})"), cmd, &output, Some(&startup_log))?;
    let mut started = Nginx {
        role: conf.role.clone(),
        conf_path: path,
        proc,
    };
    let ports = match conf.role {
        Role::Upstream {
            client_port,
            proxied_port,
        } => vec![client_port, proxied_port],
        Role::Proxy { port, .. } => vec![port],
    };
    for port in ports {
        wait_for_port(&mut started.proc, port, Duration::from_secs(10)).await?;
    }
    Ok(started)
}

/// Two free loopback ports for an upstream, one for a proxy.
pub fn upstream_role() -> Result<Role, String> {
    Ok(Role::Upstream {
        client_port: free_port()?,
        proxied_port: free_port()?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn conf(role: Role, tls: bool, http2: bool) -> Conf {
        Conf {
            role,
            tls,
            http2,
            dir: PathBuf::from("/w"),
            as_root: false,
            build: build_of("nginx version: nginx/1.22.1\n"),
            nofile: Some(4096),
        }
    }

    #[test]
    fn body_is_100_bytes() {
        assert_eq!(BODY.len(), 100);
    }

    #[test]
    fn upstream_tls_http2() {
        let text = conf(
            Role::Upstream {
                client_port: 1001,
                proxied_port: 1002,
            },
            true,
            true,
        )
        .render();
        assert!(text.contains("listen 127.0.0.1:1001 ssl http2;"), "{text}");
        assert!(text.contains("listen 127.0.0.1:1002 ssl;"), "{text}");
        assert!(text.contains("access_log off;"));
        assert!(text.contains("worker_processes 1;"));
        assert!(text.contains("ssl_certificate /w/server.pem;"));
        assert!(text.contains("proxy_temp_path /w/nginx-upstream-temp/proxy_temp_path;"));
        assert!(!text.contains("user root"));
        assert!(text.contains("worker_rlimit_nofile 4096;"));
        assert!(nofile_limit().is_some_and(|n| n > 0));
        assert!(!text.contains("proxy_pass"));
    }

    #[test]
    fn proxy_plain_and_tls() {
        let role = Role::Proxy {
            port: 2001,
            upstream_port: 1002,
            prefixes: vec!["/bench".to_string(), "/order".to_string()],
        };
        let plain = conf(role.clone(), false, false).render();
        assert!(plain.contains("listen 127.0.0.1:2001;"), "{plain}");
        assert!(plain.contains("proxy_pass http://bench_upstream/;"));
        assert!(plain.contains("location /bench/ {"), "{plain}");
        assert!(plain.contains("location /order/ {"), "{plain}");
        assert!(plain.contains("server 127.0.0.1:1002;"));
        assert!(plain.contains("keepalive 64;"));
        assert!(plain.contains("proxy_set_header Connection \"\";"));
        assert!(!plain.contains("ssl"));
        let mut tls = conf(role, true, false);
        tls.as_root = true;
        let tls = tls.render();
        assert!(tls.contains("listen 127.0.0.1:2001 ssl;"), "{tls}");
        assert!(tls.contains("proxy_pass https://bench_upstream/;"));
        assert!(tls.contains("proxy_ssl_verify on;"));
        assert!(tls.contains("proxy_ssl_trusted_certificate /w/ca.pem;"));
        assert!(tls.contains("user root;"));
    }

    #[test]
    fn builds_are_read() {
        let b = build_of("nginx version: nginx/1.22.1\nbuilt with OpenSSL\n");
        assert_eq!(b.version, (1, 22, 1));
        assert_eq!(b.temp_paths.len(), 5);
        assert!(b.has_error_log_option() && !b.has_http2_directive());
        let light = build_of(
            "nginx version: nginx/1.18.0 (Ubuntu)\n--without-http_fastcgi_module --without-http_scgi_module",
        );
        assert_eq!(light.version, (1, 18, 0));
        assert!(!light.has_error_log_option());
        assert_eq!(
            light.temp_paths,
            vec![
                "client_body_temp_path",
                "proxy_temp_path",
                "uwsgi_temp_path"
            ]
        );
        assert!(build_of("nginx version: nginx/1.27.4").has_http2_directive());
    }

    #[test]
    fn http2_on_newer_nginx() {
        let mut c = conf(
            Role::Upstream {
                client_port: 1001,
                proxied_port: 1002,
            },
            true,
            true,
        );
        c.build = build_of("nginx version: nginx/1.27.4");
        let text = c.render();
        assert!(text.contains("listen 127.0.0.1:1001 ssl;"), "{text}");
        assert!(text.contains("http2 on;"), "{text}");
    }
}
