//! kbin's own certificate authority.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Reportable for PkiError {
    fn hint(&self) -> Option<String> {
        match self {
            PkiError::Write { .. } => Some("check that the directory next to the cluster file is writable".into()),
        }
    }
}
