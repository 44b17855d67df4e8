//! The systemd user unit that starts the companion at login (or at boot,
//! with lingering): `minimodel companion install-unit` writes it to
//! `~/.config/systemd/user/minimodel-companion.service`; the user enables
//! it (`systemctl --user enable --now minimodel-companion`). systemd
//! stops it with SIGTERM, which the companion takes as a clean stop
//! (every item stopped, its state saved), and starts it again after a
//! crash.

use std::path::{Path, PathBuf};

/// The unit's file name.
pub const UNIT_NAME: &str = "minimodel-companion.service";

/// Quotes one argument for a unit's `ExecStart=` (systemd's rules:
/// double quotes, `\\` and `\"` escaped, `%` doubled, `$` doubled).
fn quote(arg: &str) -> String {
    let mut out = String::from("\"");
    for c in arg.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The unit's text: run `program companion run` with `args` (the
/// library and options), stopped by SIGTERM, started again on failure.
pub fn unit_text(program: &Path, args: &[String]) -> String {
    let mut exec = quote(&program.display().to_string());
    exec.push_str(" companion run");
    for arg in args {
        exec.push(' ');
        exec.push_str(&quote(arg));
    }
    format!(
        "# Written by `minimodel companion install-unit`; see docs/companion.md.\n\
         [Unit]\n\
         Description=minimodel companion: shares and downloads of verified .slm artifacts\n\
         Documentation=man:minimodel-companion(1)\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exec}\n\
         KillSignal=SIGTERM\n\
         # A stop by SIGTERM ends with 130 (interrupted, state saved).\n\
         SuccessExitStatus=130\n\
         TimeoutStopSec=30\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         # Exit 3 is a library that cannot be used (another companion holds\n\
         # it, unsafe permissions): starting again does not help.\n\
         RestartPreventExitStatus=3\n\
         NoNewPrivileges=yes\n\
         PrivateTmp=yes\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n"
    )
}

/// Where the user's units go: `$XDG_CONFIG_HOME/systemd/user`, else
/// `~/.config/systemd/user`.
pub fn user_unit_dir() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".config")))
        .map(|config| config.join("systemd").join("user"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_the_companion_on_its_library_and_restarts_on_failure() {
        let text = unit_text(
            Path::new("/usr/bin/minimodel"),
            &["--library".to_owned(), "/home/a b/lib 100%".to_owned()],
        );
        assert!(
            text.contains(
                "ExecStart=\"/usr/bin/minimodel\" companion run \"--library\" \"/home/a b/lib 100%%\"\n"
            ),
            "{text}"
        );
        for line in [
            "KillSignal=SIGTERM\n",
            "Restart=on-failure\n",
            "RestartPreventExitStatus=3\n",
            "WantedBy=default.target\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert_eq!(quote("a\"b\\c$d"), "\"a\\\"b\\\\c$$d\"");
    }
}
