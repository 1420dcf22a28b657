//! TLS on the agents' gRPC channel, the server's side (rustls with ring).
//!
//! The server's certificate chain and key are PEM files — cert-manager's Secret mounted as
//! files: `tls.crt`, `tls.key`, and `ca.crt`, the CA agents verify the server with, handed to
//! them as `LEOFLOW_AGENT_CA_FILE`. They are checked before anything starts, as agents will
//! meet them, and read again while the server runs: cert-manager renews a certificate in place
//! before it expires, and a replica must not go on serving the old one until it restarts.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::Stream;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, Error as TlsError, InconsistentKeys, RootCertStore};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How often the served certificate's files are read again.
const RELOAD_EVERY: Duration = Duration::from_secs(60);
/// The longest an agent's handshake may take: a client that connects and says nothing holds
/// a task, not the port.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent channel's TLS files (`agent_tls.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentTls {
    /// The server's certificate chain, PEM, its own certificate first.
    pub cert_file: PathBuf,
    /// The certificate's private key, PEM.
    pub key_file: PathBuf,
    /// The CA agents verify the server with (PEM), handed to them; `None`: they use their
    /// system's trusted roots.
    pub ca_file: Option<PathBuf>,
}

/// Which file a problem is with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// `agent_tls.cert_file`.
    Cert,
    /// `agent_tls.key_file`.
    Key,
    /// `agent_tls.ca_file`.
    Ca,
}

impl TlsFile {
    /// The configuration key naming the file.
    pub fn key(self) -> &'static str {
        match self {
            Self::Cert => "agent_tls.cert_file",
            Self::Key => "agent_tls.key_file",
            Self::Ca => "agent_tls.ca_file",
        }
    }
}

/// What is wrong with one of the files.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TlsFileError {
    /// The file.
    pub file: TlsFile,
    /// What is wrong, naming the path.
    pub message: String,
}

fn file_error(file: TlsFile, message: impl Into<String>) -> TlsFileError {
    TlsFileError {
        file,
        message: message.into(),
    }
}

/// The URL agents dial at `address` (HOST:PORT): `https://` when the channel is TLS.
pub fn endpoint(tls: Option<&AgentTls>, address: impl std::fmt::Display) -> String {
    match tls {
        Some(_) => format!("https://{address}"),
        None => format!("http://{address}"),
    }
}

impl AgentTls {
    /// Checks the files as agents will meet them: the chain and key readable PEM, the key the
    /// certificate's, the certificate valid for `name` (the host agents dial) and, with a
    /// CA file, signed by that CA and valid now.
    pub fn check(&self, name: &str) -> Result<(), TlsFileError> {
        let key = self.certified_key()?.1;
        let leaf = ParsedCertificate::try_from(&key.cert[0])
            .map_err(|e| file_error(TlsFile::Cert, format!("{}: {e}", self.cert_file.display())))?;
        let server_name = ServerName::try_from(name)
            .map_err(|e| file_error(TlsFile::Cert, format!("{name:?} is not a host name: {e}")))?;
        rustls::client::verify_server_name(&leaf, &server_name).map_err(|e| {
            file_error(
                TlsFile::Cert,
                format!(
                    "{} does not serve {name}, the host agents dial (advertise_grpc, else host): \
                     {e}; add it to the certificate's names (cert-manager: dnsNames or \
                     ipAddresses)",
                    self.cert_file.display()
                ),
            )
        })?;
        match &self.ca_file {
            Some(ca) => self.check_signed_by(&leaf, &key.cert[1..], ca),
            None => Ok(()),
        }
    }

    /// The chain verifies up to the CA of `ca_file` (with the chain's intermediates), now.
    fn check_signed_by(
        &self,
        leaf: &ParsedCertificate<'_>,
        intermediates: &[CertificateDer<'static>],
        ca_file: &Path,
    ) -> Result<(), TlsFileError> {
        let mut roots = RootCertStore::empty();
        for ca in read_certificates(TlsFile::Ca, ca_file)? {
            roots.add(ca).map_err(|e| {
                file_error(TlsFile::Ca, format!("{}: not a CA: {e}", ca_file.display()))
            })?;
        }
        let algorithms = provider().signature_verification_algorithms.all;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            leaf,
            &roots,
            intermediates,
            UnixTime::now(),
            algorithms,
        )
        .map_err(|error| self.unverified(error, ca_file))
    }

    /// Why the chain does not verify, blamed on the file to fix.
    fn unverified(&self, error: TlsError, ca_file: &Path) -> TlsFileError {
        let expired = matches!(
            &error,
            TlsError::InvalidCertificate(
                CertificateError::Expired
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. }
            )
        );
        if expired {
            let cert = self.cert_file.display();
            return file_error(TlsFile::Cert, format!("{cert}: {error}"));
        }
        file_error(
            TlsFile::Ca,
            format!(
                "agents could not verify the server with {}: {error} (it must be the CA that \
                 signed agent_tls.cert_file: cert-manager's ca.crt beside its tls.crt)",
                ca_file.display()
            ),
        )
    }

    /// The certificate chain and key, checked to belong together, with the files' bytes.
    fn certified_key(&self) -> Result<(Vec<u8>, CertifiedKey), TlsFileError> {
        let (cert_pem, key_pem) = (
            read(TlsFile::Cert, &self.cert_file)?,
            read(TlsFile::Key, &self.key_file)?,
        );
        let chain = certificates(TlsFile::Cert, &self.cert_file, &cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            file_error(
                TlsFile::Key,
                format!(
                    "{} holds no PEM private key (PKCS#8, RSA or EC): {e}",
                    self.key_file.display()
                ),
            )
        })?;
        let signing_key = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| file_error(TlsFile::Key, format!("{}: {e}", self.key_file.display())))?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
            Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                return Err(file_error(
                    TlsFile::Key,
                    format!(
                        "{} is not the key of the certificate in agent_tls.cert_file {}",
                        self.key_file.display(),
                        self.cert_file.display()
                    ),
                ));
            }
            Err(e) => {
                let cert = self.cert_file.display();
                return Err(file_error(TlsFile::Cert, format!("{cert}: {e}")));
            }
        }
        Ok(([cert_pem, key_pem].concat(), certified))
    }
}

/// The crypto every TLS piece here uses: ring's (no aws-lc in this build).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(file: TlsFile, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path)
        .map_err(|e| file_error(file, format!("cannot read {}: {e}", path.display())))
}

fn read_certificates(
    file: TlsFile,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    certificates(file, path, &read(file, path)?)
}

/// The certificates of a PEM file, at least one.
fn certificates(
    file: TlsFile,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(file, format!("{}: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(file_error(
            file,
            format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    Ok(certificates)
}

/// The certificate served to agents, read again from its files when they change.
#[derive(Debug)]
pub struct ServedCertificate {
    files: AgentTls,
    /// The files' bytes it was read from, and what they hold.
    current: RwLock<(Vec<u8>, Arc<CertifiedKey>)>,
}

impl ServedCertificate {
    /// The certificate and key of `files`.
    pub fn load(files: &AgentTls) -> Result<Arc<Self>, TlsFileError> {
        let (bytes, key) = files.certified_key()?;
        Ok(Arc::new(Self {
            files: files.clone(),
            current: RwLock::new((bytes, Arc::new(key))),
        }))
    }

    /// Reads the files again and serves what they hold if it changed and is a certificate
    /// with its key (a renewal writes both: half-written, the old pair stays until the next
    /// read). Returns whether it changed.
    pub fn reload(&self) -> Result<bool, TlsFileError> {
        let (bytes, key) = self.files.certified_key()?;
        let mut current = self.current.write().expect("not poisoned");
        if current.0 == bytes {
            return Ok(false);
        }
        *current = (bytes, Arc::new(key));
        Ok(true)
    }

    /// Reads the files every [`RELOAD_EVERY`] until `stop` turns true.
    pub async fn keep_reloading(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return,
                () = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            match self.reload() {
                Ok(true) => tracing::info!(
                    "serving agents the renewed certificate of {}",
                    self.files.cert_file.display()
                ),
                Ok(false) => {}
                Err(error) => tracing::warn!(
                    "{}: {error}; still serving the certificate read before",
                    error.file.key()
                ),
            }
        }
    }
}

impl ResolvesServerCert for ServedCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("not poisoned").1.clone())
    }
}

/// The connections of `listener` once their TLS handshake is done, for tonic. Handshakes run
/// side by side, so a slow client holds up no other.
pub fn incoming(
    listener: TcpListener,
    certificate: Arc<ServedCertificate>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, Infallible>> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    // gRPC is HTTP/2, and tonic's client insists on it being negotiated.
    config.alpn_protocols = vec![b"h2".to_vec()];
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept(listener, TlsAcceptor::from(Arc::new(config)), tx));
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|stream| (Ok(stream), rx))
    })
}

/// Accepts connections until the server drops its end of `tx`.
async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<TlsStream<TcpStream>>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // The server stopped: the listener goes with this task, freeing the port.
            () = tx.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(%error, "accepting an agent's connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Without TCP_NODELAY small replies wait for the agent's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(stream).await;
                }
                // The agent says why in its try's failure; here it would be noise from probes.
                Ok(Err(error)) => tracing::debug!(%peer, %error, "an agent's TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "an agent's TLS handshake timed out"),
            }
        });
    }
}

/// Certificates made at test time, in a directory removed at the end.
#[cfg(test)]
pub(crate) mod test_pki {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

    use super::AgentTls;

    /// A CA (`ca.crt`) and the certificates it issues, in a directory of their own.
    pub struct Pki {
        pub dir: PathBuf,
        ca: CertifiedIssuer<'static, KeyPair>,
    }

    impl Pki {
        pub fn new(name: &str) -> Self {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "leoflow-agent-tls-{}-{}-{name}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{name} CA"));
            let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
            std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
            Self { dir, ca }
        }

        pub fn ca_file(&self) -> PathBuf {
            self.dir.join("ca.crt")
        }

        /// A certificate for `names` as `{stem}.crt` and its key as `{stem}.key`, with this
        /// CA as `ca_file`; `expired` makes one that ended in 2001.
        pub fn issue(&self, stem: &str, names: &[&str], expired: bool) -> AgentTls {
            let mut params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            if expired {
                params.not_before = rcgen::date_time_ymd(2000, 1, 1);
                params.not_after = rcgen::date_time_ymd(2001, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.ca).unwrap();
            let files = AgentTls {
                cert_file: self.dir.join(format!("{stem}.crt")),
                key_file: self.dir.join(format!("{stem}.key")),
                ca_file: Some(self.ca_file()),
            };
            write(&files.cert_file, &cert.pem());
            write(&files.key_file, &key.serialize_pem());
            files
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_pki::Pki;
    use super::*;

    #[test]
    fn a_renewed_certificate_is_served_and_a_half_written_one_is_not() {
        let pki = Pki::new("reload");
        let files = pki.issue("tls", &["127.0.0.1"], false);
        let served = ServedCertificate::load(&files).unwrap();
        let first = served.current.read().unwrap().1.clone();
        assert!(!served.reload().unwrap(), "nothing changed");

        // cert-manager renews in place: the new pair is served from the next read.
        let renewed = pki.issue("renewed", &["127.0.0.1"], false);
        std::fs::copy(&renewed.cert_file, &files.cert_file).unwrap();
        let error = served.reload().unwrap_err();
        assert_eq!(
            error.file,
            TlsFile::Key,
            "the new certificate, the old key: {error}"
        );
        assert!(Arc::ptr_eq(&served.current.read().unwrap().1, &first));
        std::fs::copy(&renewed.key_file, &files.key_file).unwrap();
        assert!(served.reload().unwrap());
        assert!(!Arc::ptr_eq(&served.current.read().unwrap().1, &first));
    }
}
