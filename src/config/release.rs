//! Release versions and the upgrade rules between them that do not depend on any host: which
//! etcd release may follow which.

/// `major.minor.patch` of a release (`v1.34.2`; a pre-release suffix is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// A release tag as the cluster file writes it (`v1.37.2`).
    pub fn parse(s: &str) -> Option<Version> {
        Self::parse_bare(s.trim().strip_prefix('v')?)
    }
    /// A version without the leading `v`, as `etcd --version` prints it (`3.6.17`).
    pub fn parse_bare(s: &str) -> Option<Version> {
        let core = s.trim().split(['-', '+']).next()?;
        let mut it = core.split('.').map(|p| p.parse::<u32>().ok());
        let v = Version(it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(v)
    }
    /// The release an `etcd --version` output names (`etcd Version: 3.6.17` on its first line).
    pub fn of_etcd_output(text: &str) -> Option<Version> {
        text.lines().find_map(|l| l.trim().strip_prefix("etcd Version:")).and_then(Self::parse_bare)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The first etcd 3.5 patch that may move to 3.6 (etcd's upgrade guide: 3.5.24 to 3.5.26 fix
/// several upgrade blockers; 3.5.20 to 3.5.23 carry wrong membership data after an upgrade
/// from 3.5.19 or older).
pub const ETCD_35_TO_36_FROM: Version = Version(3, 5, 26);

/// Why a member running `running` may not be switched to `target` (`None`: a patch within the
/// minor, the next minor from a valid source, or nothing to do). etcd moves one minor release
/// at a time, 3.5 to 3.6 only from [`ETCD_35_TO_36_FROM`], and never back a minor release: a
/// member refuses data that a newer release wrote, so going back is a restore of the snapshot
/// taken before the upgrade.
pub fn etcd_step(host: &str, running: Version, target: Version) -> Option<String> {
    let (r, t) = (running, target);
    if r.0 != t.0 {
        Some(format!("etcd on {host} runs {r}: a different major release than {t}"))
    } else if t.1 > r.1 + 1 {
        Some(format!("etcd moves one minor release at a time: {host} runs {r}, and {t} skips v{}.{}", r.0, r.1 + 1))
    } else if t.1 < r.1 {
        Some(format!(
            "etcd never goes back a minor release: {host} runs {r}, and a {t} member refuses the data {r} wrote (hint: to go back, restore the snapshot taken before the upgrade with `kbin etcd restore`; or set etcd_version back to v{}.{}.x)",
            r.0, r.1
        ))
    } else if t.1 == r.1 + 1 && (r.0, r.1) == (3, 5) && r < ETCD_35_TO_36_FROM {
        Some(format!(
            "etcd moves from 3.5 to 3.6 only from {ETCD_35_TO_36_FROM} or later: {host} runs {r} (hint: upgrade to the newest 3.5 patch first: set etcd_version = \"v3.5.x\" with x >= {}, run `kbin upgrade`, then move to {t})",
            ETCD_35_TO_36_FROM.2
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(Version::parse("v1.34.2"), Some(Version(1, 34, 2)));
        assert_eq!(Version::parse("v1.35.0-rc.1"), Some(Version(1, 35, 0)));
        assert_eq!(Version::parse("1.34.2"), None);
        assert_eq!(Version::parse("v1.34"), None);
        assert!(v("v1.34.10") > v("v1.34.9"));
        assert_eq!(v("v1.34.2").to_string(), "v1.34.2");
        assert_eq!(Version::of_etcd_output("etcd Version: 3.6.17\nGit SHA: 0\nGo Version: go1.26.8\n"), Some(Version(3, 6, 17)));
        assert_eq!(Version::of_etcd_output("etcdctl version: 3.6.17\n"), None);
    }

    #[test]
    fn etcd_moves_a_patch_or_one_minor_from_a_valid_source() {
        assert_eq!(etcd_step("e1", v("v3.5.36"), v("v3.5.36")), None);
        assert_eq!(etcd_step("e1", v("v3.5.21"), v("v3.5.36")), None, "a patch within 3.5 is how a 3.5.21 cluster gets ready");
        assert_eq!(etcd_step("e1", v("v3.5.26"), v("v3.6.17")), None);
        assert_eq!(etcd_step("e1", v("v3.6.15"), v("v3.6.17")), None);
        assert_eq!(etcd_step("e1", v("v3.6.17"), v("v3.7.3")), None);
    }

    #[test]
    fn etcd_below_the_valid_source_says_which_patch_first() {
        let p = etcd_step("e1", v("v3.5.21"), v("v3.6.17")).unwrap();
        assert!(p.contains("only from v3.5.26 or later: e1 runs v3.5.21") && p.contains("newest 3.5 patch first"), "{p}");
        assert!(etcd_step("e1", v("v3.5.25"), v("v3.6.0")).is_some());
    }

    #[test]
    fn etcd_never_skips_a_minor_nor_goes_back_one() {
        assert!(etcd_step("e1", v("v3.5.36"), v("v3.7.3")).unwrap().contains("one minor release at a time"));
        let back = etcd_step("e1", v("v3.6.17"), v("v3.5.36")).unwrap();
        assert!(back.contains("never goes back a minor release") && back.contains("kbin etcd restore"), "{back}");
        assert!(etcd_step("e1", v("v3.6.17"), v("v4.0.0")).unwrap().contains("major"));
    }
}
