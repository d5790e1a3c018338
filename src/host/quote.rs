//! The one place where an argv list becomes a remote shell command line.
//!
//! sshd hands the command string to the login shell (`$SHELL -c STRING`), so every argument must
//! reach it as exactly one word whatever bytes it holds. Each argument that is not made only of
//! characters the shell never treats specially is wrapped in single quotes, and a single quote
//! inside it becomes `'\''` (close, escaped quote, reopen). Inside single quotes nothing is special
//! to a POSIX shell: not `$`, not backticks, not backslashes, not newlines.

use std::borrow::Cow;

/// Characters that never need quoting in any position of a POSIX shell word.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ',' | ':' | '@' | '%' | '+' | '=')
}

/// Quote one argument for a POSIX shell. The empty string becomes `''`.
pub fn quote(arg: &str) -> Cow<'_, str> {
    // '=' at the start of a word is fine; a leading '-' is the command's business, not the shell's.
    if !arg.is_empty() && arg.chars().all(is_plain) {
        return Cow::Borrowed(arg);
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Cow::Owned(out)
}

/// Join an argv list into one command line, quoting each argument. NUL bytes cannot be passed
/// through a shell at all; the caller ([`super::Cmd`]) rejects them before this is reached.
pub fn join<S: AsRef<str>>(argv: &[S]) -> String {
    let mut out = String::new();
    for (i, a) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&quote(a.as_ref()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const TABLE: &[(&str, &str)] = &[
        ("plain", "plain"),
        ("/opt/kubernetes/bin", "/opt/kubernetes/bin"),
        ("--data-dir=/var/lib/etcd", "--data-dir=/var/lib/etcd"),
        ("", "''"),
        ("two words", "'two words'"),
        ("it's", "'it'\\''s'"),
        ("'", "''\\'''"),
        ("\"double\"", "'\"double\"'"),
        ("$HOME", "'$HOME'"),
        ("${x:-y}", "'${x:-y}'"),
        ("`id`", "'`id`'"),
        ("$(reboot)", "'$(reboot)'"),
        ("a\nb", "'a\nb'"),
        ("tab\there", "'tab\there'"),
        ("back\\slash", "'back\\slash'"),
        ("*.conf", "'*.conf'"),
        ("~root", "'~root'"),
        ("a;b&&c|d", "'a;b&&c|d'"),
        ("<in >out", "'<in >out'"),
        ("héllo wörld", "'héllo wörld'"),
        ("日本", "'日本'"),
        ("!event", "'!event'"),
        ("#comment", "'#comment'"),
    ];

    #[test]
    fn quote_table() {
        for (input, want) in TABLE {
            assert_eq!(quote(input), *want, "quoting {input:?}");
        }
    }

    /// The table must not only look right: a real shell must get every argument back unchanged.
    #[test]
    fn quoted_arguments_survive_a_real_shell() {
        let args: Vec<&str> = TABLE.iter().map(|(i, _)| *i).collect();
        let line = format!("printf '%s\\0' {}", join(&args));
        let out = Command::new("sh").arg("-c").arg(&line).output().expect("run sh");
        assert!(out.status.success(), "sh failed: {}", String::from_utf8_lossy(&out.stderr));
        let got: Vec<String> = out.stdout.split(|b| *b == 0).filter(|_| true).map(|s| String::from_utf8(s.to_vec()).unwrap()).collect();
        // printf emits a trailing NUL, so the split yields one empty string at the end
        assert_eq!(&got[..got.len() - 1], &args[..]);
    }

    #[test]
    fn join_separates_with_single_spaces() {
        assert_eq!(join(&["sudo", "-n", "--", "cat", "/etc/a b"]), "sudo -n -- cat '/etc/a b'");
    }
}
