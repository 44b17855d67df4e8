//! What starts the companion at login, one kind per system, written by
//! `minimodel companion install-unit` ([`LoginStart`]):
//! - Linux: a systemd user unit,
//!   `~/.config/systemd/user/minimodel-companion.service`; the user
//!   enables it (`systemctl --user enable --now minimodel-companion`).
//!   systemd stops it with SIGTERM, which the companion takes as a clean
//!   stop (every item stopped, its state saved), and starts it again after
//!   a crash.
//! - macOS: a launchd agent, `~/Library/LaunchAgents/<label>.plist`,
//!   loaded with `launchctl bootstrap gui/$(id -u) PLIST`; launchd stops
//!   it with SIGTERM and starts it again when it fails, not when the
//!   library cannot be used (`--refusal-exits-zero`); its output goes to
//!   `~/Library/Logs/minimodel-companion.log`.
//! - Windows: a Task Scheduler task run at the user's logon, its XML
//!   written to `%LOCALAPPDATA%\minimodel\minimodel-companion.task.xml`
//!   and registered with `schtasks /Create /TN minimodel-companion /XML
//!   FILE`; restarted after a failure. Ending the task ends the process
//!   at once, which the library survives as it survives a crash.
//!
//! The texts are pure functions, tested on any system.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use minimodel_swarm::platform::System;

/// What starts the companion at login on a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStart {
    /// A systemd user unit (Linux).
    SystemdUser,
    /// A launchd agent (macOS).
    LaunchdAgent,
    /// A Task Scheduler logon task (Windows).
    LogonTask,
}

/// The launchd agent's label (and file stem).
pub const AGENT_LABEL: &str = "org.minimodel.companion";
/// The logon task's name.
pub const TASK_NAME: &str = "minimodel-companion";
/// The launchd agent's log file, in `~/Library/Logs`.
pub const AGENT_LOG: &str = "minimodel-companion.log";

impl LoginStart {
    /// The kind `system` uses.
    pub fn of(system: System) -> LoginStart {
        match system {
            System::Linux => LoginStart::SystemdUser,
            System::MacOs => LoginStart::LaunchdAgent,
            System::Windows => LoginStart::LogonTask,
        }
    }

    /// Its file's name.
    pub fn file_name(self) -> String {
        match self {
            LoginStart::SystemdUser => UNIT_NAME.to_owned(),
            LoginStart::LaunchdAgent => format!("{AGENT_LABEL}.plist"),
            LoginStart::LogonTask => format!("{TASK_NAME}.task.xml"),
        }
    }

    /// Its text: run `program companion run` with `args`; the launchd
    /// agent's output goes to `log` (launchd sends it nowhere unless told
    /// a file), when one is given.
    pub fn text(self, program: &Path, args: &[String], log: Option<&Path>) -> String {
        match self {
            LoginStart::SystemdUser => unit_text(program, args),
            LoginStart::LaunchdAgent => agent_text(program, args, log),
            LoginStart::LogonTask => task_text(program, args),
        }
    }

    /// The file its output goes to, from the environment `env`: the
    /// launchd agent's, `~/Library/Logs/minimodel-companion.log` (where
    /// Console shows it). The others log where their system logs a
    /// service's output (the journal), or nowhere (a logon task).
    pub fn log_file(self, env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
        match self {
            LoginStart::LaunchdAgent => env("HOME")
                .map(PathBuf::from)
                .filter(|home| home.has_root())
                .map(|home| home.join("Library").join("Logs").join(AGENT_LOG)),
            LoginStart::SystemdUser | LoginStart::LogonTask => None,
        }
    }

    /// The file's bytes: UTF-8, except the task's XML, which Task
    /// Scheduler reads as UTF-16 (little-endian, with its byte order
    /// mark).
    pub fn file_bytes(self, text: &str) -> Vec<u8> {
        match self {
            LoginStart::LogonTask => [0xFF, 0xFE]
                .into_iter()
                .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
                .collect(),
            _ => text.as_bytes().to_vec(),
        }
    }

    /// Where its file goes, from the environment `env`; `None` when the
    /// environment names no such place.
    pub fn dir(self, env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
        let absolute = |name: &str| env(name).map(PathBuf::from).filter(|path| path.has_root());
        match self {
            LoginStart::SystemdUser => absolute("XDG_CONFIG_HOME")
                .or_else(|| absolute("HOME").map(|home| home.join(".config")))
                .map(|config| config.join("systemd").join("user")),
            LoginStart::LaunchdAgent => {
                absolute("HOME").map(|home| home.join("Library").join("LaunchAgents"))
            }
            LoginStart::LogonTask => {
                minimodel_swarm::platform::places::data_home(System::Windows, env)
                    .map(|data| data.join("minimodel"))
            }
        }
    }

    /// The command that starts it now and at every login.
    pub fn enable_command(self, path: &Path) -> String {
        match self {
            LoginStart::SystemdUser => {
                "systemctl --user enable --now minimodel-companion".to_owned()
            }
            LoginStart::LaunchdAgent => format!(
                "launchctl bootstrap gui/$(id -u) {}",
                quote_shell(&path.display().to_string())
            ),
            LoginStart::LogonTask => format!(
                "schtasks /Create /TN {TASK_NAME} /XML \"{}\" && schtasks /Run /TN {TASK_NAME}",
                path.display()
            ),
        }
    }
}

/// Escapes text for XML character data and attribute values.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Quotes one word for a POSIX shell (what the user pastes into
/// Terminal): in single quotes, each `'` written as `'\''`.
fn quote_shell(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The launchd agent: `program companion run --refusal-exits-zero
/// args...` at login, again after a failure (not after a clean stop), its
/// output (both streams) appended to `log` when one is given (launchd
/// otherwise sends it nowhere). launchd tells a clean exit from any other
/// and nothing finer, so a library that cannot be used (what exits 3, and
/// what systemd's unit keeps from restarting) exits 0 under it, or it
/// would be refused again every 5 s.
pub fn agent_text(program: &Path, args: &[String], log: Option<&Path>) -> String {
    const REFUSAL_EXITS_ZERO: &str = "--refusal-exits-zero";
    let mut arguments = String::new();
    let mut run = vec![
        program.display().to_string(),
        "companion".into(),
        "run".into(),
    ];
    // Once: clap refuses a flag given twice.
    if !args.iter().any(|arg| arg == REFUSAL_EXITS_ZERO) {
        run.push(REFUSAL_EXITS_ZERO.into());
    }
    for arg in run.iter().chain(args) {
        arguments.push_str(&format!("\t\t<string>{}</string>\n", xml(arg)));
    }
    let log = log.map_or(String::new(), |log| {
        let log = xml(&log.display().to_string());
        format!(
            "\t<key>StandardOutPath</key>\n\t<string>{log}</string>\n\
             \t<key>StandardErrorPath</key>\n\t<string>{log}</string>\n"
        )
    });
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!-- Written by `minimodel companion install-unit`; see docs/companion.md. -->\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \t<key>Label</key>\n\
         \t<string>{AGENT_LABEL}</string>\n\
         \t<key>ProgramArguments</key>\n\
         \t<array>\n\
         {arguments}\
         \t</array>\n\
         \t<key>RunAtLoad</key>\n\
         \t<true/>\n\
         \t<key>KeepAlive</key>\n\
         \t<dict>\n\
         \t\t<key>SuccessfulExit</key>\n\
         \t\t<false/>\n\
         \t</dict>\n\
         \t<key>ThrottleInterval</key>\n\
         \t<integer>5</integer>\n\
         \t<key>ProcessType</key>\n\
         \t<string>Background</string>\n\
         {log}\
         </dict>\n\
         </plist>\n"
    )
}

/// Quotes one argument for a Windows command line as the C runtime's
/// `CommandLineToArgvW` reads it back: in double quotes, each `"` as
/// `\"`, and the backslashes before a `"` (or the closing one) doubled.
fn quote_windows(arg: &str) -> String {
    let mut out = String::from("\"");
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            c => {
                out.push_str(&"\\".repeat(backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(backslashes * 2));
    out.push('"');
    out
}

/// The logon task: `program companion run args...` when this user logs
/// on, with the user's own rights, no time limit, restarted (three times,
/// a minute apart) after a failure, one instance at a time.
pub fn task_text(program: &Path, args: &[String]) -> String {
    let mut arguments = String::from("companion run");
    for arg in args {
        arguments.push(' ');
        arguments.push_str(&quote_windows(arg));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\r\n\
         <!-- Written by `minimodel companion install-unit`; see docs/companion.md. -->\r\n\
         <Task version=\"1.2\" xmlns=\"http://schemas.microsoft.com/windows/2004/02/mit/task\">\r\n\
         \x20 <RegistrationInfo>\r\n\
         \x20   <Description>minimodel companion: shares and downloads of verified .slm artifacts</Description>\r\n\
         \x20 </RegistrationInfo>\r\n\
         \x20 <Triggers>\r\n\
         \x20   <LogonTrigger>\r\n\
         \x20     <Enabled>true</Enabled>\r\n\
         \x20   </LogonTrigger>\r\n\
         \x20 </Triggers>\r\n\
         \x20 <Principals>\r\n\
         \x20   <Principal id=\"Author\">\r\n\
         \x20     <LogonType>InteractiveToken</LogonType>\r\n\
         \x20     <RunLevel>LeastPrivilege</RunLevel>\r\n\
         \x20   </Principal>\r\n\
         \x20 </Principals>\r\n\
         \x20 <Settings>\r\n\
         \x20   <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>\r\n\
         \x20   <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>\r\n\
         \x20   <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>\r\n\
         \x20   <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>\r\n\
         \x20   <RestartOnFailure>\r\n\
         \x20     <Interval>PT1M</Interval>\r\n\
         \x20     <Count>3</Count>\r\n\
         \x20   </RestartOnFailure>\r\n\
         \x20 </Settings>\r\n\
         \x20 <Actions Context=\"Author\">\r\n\
         \x20   <Exec>\r\n\
         \x20     <Command>{}</Command>\r\n\
         \x20     <Arguments>{}</Arguments>\r\n\
         \x20   </Exec>\r\n\
         \x20 </Actions>\r\n\
         </Task>\r\n",
        xml(&program.display().to_string()),
        xml(&arguments)
    )
}

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
    LoginStart::SystemdUser.dir(&|name| std::env::var_os(name))
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

    #[test]
    fn the_launchd_agent_runs_the_companion_at_login_and_after_a_failure() {
        let text = agent_text(
            Path::new("/Applications/minimodel"),
            &[
                "--library".to_owned(),
                "/Users/a b/<lib> & \"x\"".to_owned(),
            ],
            Some(Path::new("/Users/a&b/Library/Logs/minimodel-companion.log")),
        );
        for line in [
            "<string>org.minimodel.companion</string>",
            "<key>StandardErrorPath</key>\n\t<string>/Users/a&amp;b/Library/Logs/minimodel-companion.log</string>",
            "<key>StandardOutPath</key>\n\t<string>/Users/a&amp;b/Library/Logs/minimodel-companion.log</string>",
            "<string>/Applications/minimodel</string>\n\t\t<string>companion</string>\n\t\t<string>run</string>\n\t\t<string>--refusal-exits-zero</string>\n\t\t<string>--library</string>\n",
            "<string>/Users/a b/&lt;lib&gt; &amp; &quot;x&quot;</string>",
            "<key>RunAtLoad</key>\n\t<true/>",
            "<key>SuccessfulExit</key>\n\t\t<false/>",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Every element that opens closes.
        for tag in ["plist", "dict", "array"] {
            assert_eq!(
                text.matches(&format!("<{tag}")).count(),
                text.matches(&format!("</{tag}>")).count(),
                "{tag}"
            );
        }
        // Given already (`install-unit -- --refusal-exits-zero`), the flag
        // is not added again: clap refuses it twice. Without a log, no
        // log keys.
        let given = agent_text(Path::new("/m"), &["--refusal-exits-zero".to_owned()], None);
        assert_eq!(given.matches("--refusal-exits-zero").count(), 1, "{given}");
        assert!(!given.contains("StandardErrorPath"), "{given}");
    }

    #[test]
    fn only_the_launchd_agent_names_a_log_file_under_home() {
        let env = |name: &str| (name == "HOME").then(|| OsString::from("/Users/ada"));
        assert_eq!(
            LoginStart::LaunchdAgent.log_file(&env),
            Some(PathBuf::from(
                "/Users/ada/Library/Logs/minimodel-companion.log"
            ))
        );
        assert_eq!(LoginStart::SystemdUser.log_file(&env), None);
        assert_eq!(LoginStart::LogonTask.log_file(&env), None);
        let relative = |_: &str| Some(OsString::from("ada"));
        assert_eq!(LoginStart::LaunchdAgent.log_file(&relative), None);
    }

    #[test]
    fn the_launchd_command_quotes_the_agent_path_for_the_shell() {
        let enable = LoginStart::LaunchdAgent.enable_command(Path::new(
            "/Users/o'hara $HOME/Library/LaunchAgents/org.minimodel.companion.plist",
        ));
        assert_eq!(
            enable,
            r"launchctl bootstrap gui/$(id -u) '/Users/o'\''hara $HOME/Library/LaunchAgents/org.minimodel.companion.plist'"
        );
        assert_eq!(quote_shell(""), "''");
        assert_eq!(quote_shell("a'"), r"'a'\'''");
    }

    #[test]
    fn the_logon_task_runs_the_companion_with_its_arguments_quoted() {
        let text = task_text(
            Path::new(r"C:\Program Files\minimodel\minimodel.exe"),
            &[
                "--library".to_owned(),
                r"C:\Users\a b\lib\".to_owned(),
                r#"say "hi""#.to_owned(),
            ],
        );
        assert!(
            text.contains(r"<Command>C:\Program Files\minimodel\minimodel.exe</Command>"),
            "{text}"
        );
        // The trailing backslash doubled before the closing quote; the
        // inner quotes escaped; all of it escaped again for XML.
        assert!(
            text.contains(
                r#"<Arguments>companion run &quot;--library&quot; &quot;C:\Users\a b\lib\\&quot; &quot;say \&quot;hi\&quot;&quot;</Arguments>"#
            ),
            "{text}"
        );
        for line in [
            "<LogonTrigger>",
            "<RunLevel>LeastPrivilege</RunLevel>",
            "<ExecutionTimeLimit>PT0S</ExecutionTimeLimit>",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let bytes = LoginStart::LogonTask.file_bytes(&text);
        assert_eq!(&bytes[..4], &[0xFF, 0xFE, b'<', 0]);
        assert_eq!(bytes.len(), 2 + 2 * text.encode_utf16().count());
    }

    #[test]
    fn each_system_starts_the_companion_its_own_way_in_its_own_place() {
        let env = |name: &str| {
            match name {
                "HOME" => Some("/home/ada"),
                "LOCALAPPDATA" => Some(r"C:\Users\ada\AppData\Local"),
                _ => None,
            }
            .map(OsString::from)
        };
        assert_eq!(LoginStart::of(System::Linux), LoginStart::SystemdUser);
        assert_eq!(LoginStart::of(System::MacOs), LoginStart::LaunchdAgent);
        assert_eq!(LoginStart::of(System::Windows), LoginStart::LogonTask);
        assert_eq!(
            LoginStart::SystemdUser.dir(&env),
            Some(PathBuf::from("/home/ada/.config/systemd/user"))
        );
        assert_eq!(
            LoginStart::LaunchdAgent.dir(&env),
            Some(PathBuf::from("/home/ada/Library/LaunchAgents"))
        );
        assert_eq!(
            LoginStart::LogonTask.dir(&env),
            Some(PathBuf::from(r"C:\Users\ada\AppData\Local").join("minimodel"))
        );
        assert_eq!(
            LoginStart::LaunchdAgent.file_name(),
            "org.minimodel.companion.plist"
        );
        assert!(
            LoginStart::LogonTask
                .enable_command(Path::new("t.xml"))
                .contains("schtasks /Create")
        );
        assert_eq!(quote_windows(""), "\"\"");
        assert_eq!(quote_windows(r"a\b"), r#""a\b""#);
    }
}
