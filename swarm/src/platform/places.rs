//! Where each system keeps a user's application data: pure functions of
//! the system and its environment, tested for all three on any system.

use std::ffi::OsString;
use std::path::PathBuf;

use super::System;

/// The parent of `minimodel/` for `system`, from the environment `env`:
/// - Linux: `$XDG_DATA_HOME`, else `$HOME/.local/share`;
/// - macOS: `$HOME/Library/Application Support`;
/// - Windows: `%LOCALAPPDATA%` (data that stays on this machine: a
///   library of multi-GB artifacts has no place in a roaming profile),
///   else `%USERPROFILE%\AppData\Local`.
///
/// Only absolute paths count: a relative one would move with the working
/// directory.
pub fn data_home(system: System, env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let absolute = |name: &str| {
        env(name)
            .map(PathBuf::from)
            .filter(|path| is_absolute(system, path))
    };
    match system {
        System::Linux => absolute("XDG_DATA_HOME")
            .or_else(|| absolute("HOME").map(|home| home.join(".local").join("share"))),
        System::MacOs => {
            absolute("HOME").map(|home| home.join("Library").join("Application Support"))
        }
        System::Windows => absolute("LOCALAPPDATA")
            .or_else(|| absolute("USERPROFILE").map(|home| home.join("AppData").join("Local"))),
    }
}

/// The environment variables [`data_home`] reads on `system`, for a
/// message that says what to set.
pub fn data_home_variables(system: System) -> &'static str {
    match system {
        System::Linux => "neither HOME nor XDG_DATA_HOME is set",
        System::MacOs => "HOME is not set",
        System::Windows => "neither LOCALAPPDATA nor USERPROFILE is set",
    }
}

/// Absolute on `system`, whichever system reads it: `/...` on Unix, a
/// drive (`C:\`) or a UNC path (`\\server\share`) on Windows.
fn is_absolute(system: System, path: &std::path::Path) -> bool {
    let text = path.to_string_lossy();
    match system {
        System::Linux | System::MacOs => text.starts_with('/'),
        System::Windows => {
            let bytes = text.as_bytes();
            text.starts_with(r"\\")
                || (bytes.len() >= 3
                    && bytes[0].is_ascii_alphabetic()
                    && bytes[1] == b':'
                    && matches!(bytes[2], b'\\' | b'/'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        }
    }

    #[test]
    fn each_system_has_its_own_place_for_data() {
        let all = env(&[
            ("HOME", "/home/ada"),
            ("XDG_DATA_HOME", "/data/ada"),
            ("LOCALAPPDATA", r"C:\Users\ada\AppData\Local"),
            ("USERPROFILE", r"C:\Users\ada"),
        ]);
        assert_eq!(data_home(System::Linux, &all), Some("/data/ada".into()));
        assert_eq!(
            data_home(System::MacOs, &all),
            Some(
                PathBuf::from("/home/ada")
                    .join("Library")
                    .join("Application Support")
            )
        );
        assert_eq!(
            data_home(System::Windows, &all),
            Some(r"C:\Users\ada\AppData\Local".into())
        );
    }

    #[test]
    fn fallbacks_and_relative_paths() {
        let home_only = env(&[("HOME", "/home/ada"), ("USERPROFILE", r"C:\Users\ada")]);
        assert_eq!(
            data_home(System::Linux, &home_only),
            Some(PathBuf::from("/home/ada").join(".local").join("share"))
        );
        assert_eq!(
            data_home(System::Windows, &home_only),
            Some(PathBuf::from(r"C:\Users\ada").join("AppData").join("Local"))
        );
        // Relative values are not places.
        let relative = env(&[
            ("HOME", "ada"),
            ("XDG_DATA_HOME", "data"),
            ("LOCALAPPDATA", r"ada\Local"),
            ("USERPROFILE", "C:ada"),
        ]);
        for system in [System::Linux, System::MacOs, System::Windows] {
            assert_eq!(data_home(system, &relative), None, "{system:?}");
        }
        assert_eq!(
            data_home(System::Windows, &env(&[("LOCALAPPDATA", r"\\srv\ada")])),
            Some(r"\\srv\ada".into())
        );
        assert!(data_home_variables(System::Windows).contains("LOCALAPPDATA"));
    }
}
