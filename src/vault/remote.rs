//! Builds the [`RemoteNode`] of a `kind = "remote"` entry of `qsfs.toml`,
//! with the transport its settings ask for.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::config::{Config, NodeConfig};
use crate::node::{Node, RemoteNode, RemoteOptions};
use crate::nodeproto::{Transport, plain_transport};
use crate::qkd::{ChannelError, KeyError};

/// The node of a remote entry (nothing is connected yet).
pub(super) fn remote_node(root: &Path, config: &Config, n: &NodeConfig) -> Option<Arc<dyn Node>> {
    let address = n.address.as_deref()?;
    let mut opts = RemoteOptions::default();
    if let Some(ms) = n.connect_timeout_ms {
        opts.connect_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = n.io_timeout_ms {
        opts.io_timeout = Duration::from_millis(ms);
    }
    let transport = if n.insecure_plaintext {
        plain_transport(&n.name)
    } else {
        link_transport(root, n)
    };
    Some(Arc::new(RemoteNode::new(
        &n.name,
        address,
        &config.vault_id,
        transport,
        opts,
    )))
}

/// The QKD-keyed link to a remote node.
// TODO(issue 4, link): build `crate::link::Link` over the stream with the
// node's key pool (`n.keypool`, relative to the vault) as end A; until the
// link lands every connection is refused with this message.
fn link_transport(root: &Path, n: &NodeConfig) -> Transport {
    let link = n.name.clone();
    let pool = n
        .keypool
        .as_ref()
        .map(|p| root.join(p).display().to_string())
        .unwrap_or_default();
    Arc::new(move |_stream| {
        Err(ChannelError::Key(KeyError::Source {
            link: link.clone(),
            source_name: pool.clone(),
            detail: "QKD-keyed links are not available in this build of qsfs; \
                     set insecure_plaintext = true on a trusted network only"
                .into(),
        }))
    })
}
