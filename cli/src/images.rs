//! The images rfaas runs, all made on this machine without a registry.
//!
//! `rfa-base:<hash>` is assembled from the host's own runtime: the dynamic loader and every
//! library the rfaas binaries link (found with `ldd`), CA certificates, a `passwd` with the
//! non-root user `rfaas` (uid 10001), a world-writable `/tmp` and a `/data` owned by that user
//! (a fresh named volume mounted there inherits the ownership). Its tag is a hash of its content,
//! so it is rebuilt only when its inputs change. Every other image is `FROM rfa-base` plus one
//! layer holding `/app/main` (and any library the base lacks), again tagged by content hash.
//!
//! This module assembles each image's build context (a tar made here, see `archive`) and has
//! the engine build it (`ensure`, through `docker::Engine`) unless an image with its tag exists.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::instance::{LABEL_FUNCTION, LABEL_MANAGED, LABEL_ROLE, Role};
use rfa_engine::Engine;
use rfa_engine::UID;
use rfa_engine::archive;

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An in-memory tar of a root filesystem, with reproducible metadata (mtime 0).
struct RootFs {
    tar: tar::Builder<Vec<u8>>,
    added: BTreeSet<PathBuf>,
}

impl RootFs {
    fn new() -> RootFs {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        RootFs {
            tar,
            added: BTreeSet::new(),
        }
    }

    fn dir(&mut self, path: &str, mode: u32, uid: u64) -> anyhow::Result<()> {
        let rel = path.trim_start_matches('/');
        if !self.added.insert(PathBuf::from(rel)) {
            return Ok(());
        }
        let mut h = archive::header(tar::EntryType::Directory, mode, uid, 0);
        self.tar
            .append_data(&mut h, format!("{rel}/"), std::io::empty())?;
        Ok(())
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32) -> anyhow::Result<()> {
        let rel = path.trim_start_matches('/').to_string();
        self.parents(&rel)?;
        if !self.added.insert(PathBuf::from(&rel)) {
            return Ok(());
        }
        let mut h = archive::header(tar::EntryType::Regular, mode, 0, data.len() as u64);
        self.tar.append_data(&mut h, rel, data)?;
        Ok(())
    }

    fn symlink(&mut self, path: &Path, target: &Path) -> anyhow::Result<()> {
        let rel = path.strip_prefix("/").unwrap_or(path).to_path_buf();
        self.parents(&rel.to_string_lossy())?;
        if !self.added.insert(rel.clone()) {
            return Ok(());
        }
        let mut h = archive::header(tar::EntryType::Symlink, 0o777, 0, 0);
        self.tar.append_link(&mut h, rel, target)?;
        Ok(())
    }

    fn parents(&mut self, rel: &str) -> anyhow::Result<()> {
        let mut acc = PathBuf::new();
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            acc.push(part);
            if !self.added.contains(&acc) {
                self.dir(&acc.to_string_lossy(), 0o755, 0)?;
            }
        }
        Ok(())
    }

    /// Copies a host file into the image at the same path, reproducing every symlink on the
    /// way (`/lib -> usr/lib`, `/lib64/ld-linux…` -> `…`), so the loader finds what it expects.
    fn host_path(&mut self, path: &Path) -> anyhow::Result<()> {
        let mut acc = PathBuf::from("/");
        let components: Vec<Component> = path.components().collect();
        for (i, comp) in components.iter().enumerate() {
            let Component::Normal(part) = comp else {
                continue;
            };
            acc.push(part);
            let meta = std::fs::symlink_metadata(&acc)
                .with_context(|| format!("cannot read {}", acc.display()))?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&acc)?;
                self.symlink(&acc, &target)?;
                let resolved = acc.parent().unwrap_or(Path::new("/")).join(&target);
                let mut rest = normalize(&resolved);
                for c in &components[i + 1..] {
                    rest.push(c);
                }
                return self.host_path(&rest);
            }
            let is_last = i + 1 == components.len();
            if is_last {
                let data = std::fs::read(&acc)
                    .with_context(|| format!("cannot read {}", acc.display()))?;
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o755;
                self.file(&acc.to_string_lossy(), &data, mode)?;
            } else if !self.added.contains(acc.strip_prefix("/").unwrap_or(&acc)) {
                self.dir(&acc.to_string_lossy(), 0o755, 0)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<Vec<u8>> {
        Ok(self.tar.into_inner()?)
    }
}

/// Resolves `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(p) => out.push(p),
            _ => {}
        }
    }
    out
}

/// The shared libraries (and loader) `binary` needs, as `ldd` reports them.
pub fn linked_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd (Debian: apt-get install libc-bin)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || text.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next().unwrap_or(""),
            None => line.split_whitespace().next().unwrap_or(""),
        };
        if line.contains("not found") {
            bail!(
                "{} needs a library this host lacks: {line}",
                binary.display()
            );
        }
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Resolves sonames (`libm.so.6`) to their host paths with one `ldconfig -p`.
fn find_libraries(sonames: &[&str]) -> Vec<PathBuf> {
    let Ok(output) = std::process::Command::new("ldconfig").arg("-p").output() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let arch = std::env::consts::ARCH.replace('_', "-");
    let mut found = Vec::new();
    for soname in sonames {
        let candidates: Vec<PathBuf> = text
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{soname} ")))
            .filter_map(|l| l.split("=>").nth(1))
            .map(|p| PathBuf::from(p.trim()))
            .filter(|p| p.is_file())
            .collect();
        // Prefer the machine's own architecture over multilib copies.
        if let Some(path) = candidates
            .iter()
            .find(|p| p.to_string_lossy().contains(&arch))
            .or(candidates.first())
        {
            found.push(path.clone());
        }
    }
    found
}

fn hash(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The host runtime the base holds: the loader and glibc as this CLI links them, plus the
/// glibc family and libgcc_s (Rust's unwinder) that any binary built here may link. Fixed, so
/// the base is the same whichever binaries run on it; an image whose binary links anything else
/// carries that library in its own layer.
fn base_libraries() -> anyhow::Result<BTreeSet<PathBuf>> {
    let mut libs: BTreeSet<PathBuf> = std::env::current_exe()
        .ok()
        .map(|exe| linked_libraries(&exe))
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .collect();
    libs.extend(find_libraries(&RUNTIME_LIBRARIES));
    Ok(libs)
}

const RUNTIME_LIBRARIES: [&str; 7] = [
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
];

/// The base image: its tag and build context.
pub struct BaseImage {
    pub tag: String,
    /// `None` for a user's image (`--base-image`), which is used as it is.
    context: Option<Vec<u8>>,
    libraries: BTreeSet<PathBuf>,
}

impl BaseImage {
    /// Assembles the base from the host's runtime.
    pub fn assemble() -> anyhow::Result<BaseImage> {
        let libraries = base_libraries()?;
        let mut fs = RootFs::new();
        fs.dir("/tmp", 0o1777, 0)?;
        fs.dir("/data", 0o700, UID)?;
        fs.dir("/app", 0o755, 0)?;
        fs.dir("/etc", 0o755, 0)?;
        fs.file(
            "/etc/passwd",
            format!("root:x:0:0:root:/root:/sbin/nologin\nrfaas:x:{UID}:{UID}:rfaas:/tmp:/sbin/nologin\n")
                .as_bytes(),
            0o644,
        )?;
        fs.file(
            "/etc/group",
            format!("root:x:0:\nrfaas:x:{UID}:\n").as_bytes(),
            0o644,
        )?;
        fs.file("/etc/nsswitch.conf", b"hosts: files dns\n", 0o644)?;
        if Path::new(CA_BUNDLE).is_file() {
            fs.host_path(Path::new(CA_BUNDLE))?;
        }
        for lib in &libraries {
            fs.host_path(lib)?;
        }
        let rootfs = fs.finish()?;
        let tag = format!("rfa-base:{}", hash(&rootfs));
        let dockerfile = format!(
            "FROM scratch\nADD rootfs.tar /\nUSER {UID}:{UID}\nENV SSL_CERT_FILE={CA_BUNDLE}\n\
             EXPOSE 6000\nENTRYPOINT [\"/app/main\"]\n\
             LABEL {LABEL_MANAGED}=true {LABEL_ROLE}={}\n",
            Role::Base.as_str()
        );
        let context = context(&dockerfile, &[("rootfs.tar", &rootfs)])?;
        Ok(BaseImage {
            tag,
            context: Some(context),
            libraries,
        })
    }

    /// The base the instance's platform was started on (recorded on its proxy container).
    pub fn of_platform(recorded: Option<&str>) -> anyhow::Result<BaseImage> {
        match recorded {
            Some(tag) if !tag.starts_with("rfa-base:") => Ok(BaseImage::external(tag)),
            _ => BaseImage::assemble(),
        }
    }

    /// A user's local image as the base: app images then bring every library they link, and
    /// set the user and entry point themselves.
    pub fn external(image: &str) -> BaseImage {
        BaseImage {
            tag: image.to_string(),
            context: None,
            libraries: BTreeSet::new(),
        }
    }

    /// Builds the base unless an image with its tag exists.
    pub async fn ensure(
        &self,
        engine: &Engine,
        progress: &crate::progress::Progress,
    ) -> anyhow::Result<bool> {
        if engine.image_exists(&self.tag).await? {
            return Ok(false);
        }
        let Some(context) = &self.context else {
            bail!(
                "the base image {} is not on this machine: rfaas never pulls; load it first",
                self.tag
            );
        };
        progress.step(&format!("building base image {}", self.tag));
        build_with_retry(engine, &self.tag, context, progress, None).await?;
        Ok(true)
    }
}

/// An image `FROM` the base holding one program at `/app/main`.
pub struct AppImage {
    pub tag: String,
    context: Vec<u8>,
}

impl AppImage {
    /// `repo` is the image name (`rfa-proxy`, `rfa-fn-method2`); the tag is a content hash.
    pub fn assemble(
        base: &BaseImage,
        repo: &str,
        binary: &Path,
        role: Role,
        function: Option<&str>,
    ) -> anyhow::Result<AppImage> {
        check_image_ref(&base.tag)?;
        let mut fs = RootFs::new();
        let data =
            std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
        fs.file("/app/main", &data, 0o755)?;
        for lib in linked_libraries(binary)? {
            if !base.libraries.contains(&lib) {
                fs.host_path(&lib)?;
            }
        }
        let mut extra = String::new();
        if base.context.is_none() {
            fs.dir("/data", 0o700, UID)?;
            extra = format!("USER {UID}:{UID}\nENTRYPOINT [\"/app/main\"]\n");
        }
        let app = fs.finish()?;
        let mut labels = format!("{LABEL_MANAGED}=true {LABEL_ROLE}={}", role.as_str());
        if let Some(f) = function {
            labels.push_str(&format!(" {LABEL_FUNCTION}={f}"));
        }
        let dockerfile = format!("FROM {}\nADD app.tar /\n{extra}LABEL {labels}\n", base.tag);
        let mut h = Sha256::new();
        h.update(dockerfile.as_bytes());
        h.update(&app);
        let digest = h.finalize();
        let short: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Ok(AppImage {
            tag: format!("{repo}:{short}"),
            context: context(&dockerfile, &[("app.tar", &app)])?,
        })
    }

    /// Builds the image unless one with its tag exists; rebuilds the base first if it vanished.
    pub async fn ensure(
        &self,
        engine: &Engine,
        base: &BaseImage,
        progress: &crate::progress::Progress,
    ) -> anyhow::Result<bool> {
        if engine.image_exists(&self.tag).await? {
            return Ok(false);
        }
        base.ensure(engine, progress).await?;
        progress.step(&format!("building image {}", self.tag));
        build_with_retry(engine, &self.tag, &self.context, progress, Some(base)).await?;
        Ok(true)
    }
}

/// A user's local image (`--nats-image`) made fit to run hardened: one layer of rfaas's on top
/// adds `/data` owned by the rfaas user (so the fresh named volume mounted there is writable by
/// it) and `USER {UID}:{UID}`; the image's entry point and everything else stay as they are.
pub struct UserImage {
    pub tag: String,
    context: Vec<u8>,
}

/// On an image rfaas derived from a user's: the user's image it was made from.
pub const LABEL_FROM: &str = "io.rfaas.from";

impl UserImage {
    /// `image` is the user's tag, `image_id` its id (so a re-tagged image makes a new layer).
    pub fn assemble(
        image: &str,
        image_id: &str,
        repo: &str,
        role: Role,
    ) -> anyhow::Result<UserImage> {
        check_image_ref(image)?;
        let mut fs = RootFs::new();
        fs.dir("/data", 0o700, UID)?;
        let layer = fs.finish()?;
        // Labels are quoted: the user's tag may hold characters a bare label value cannot.
        let dockerfile = format!(
            "FROM {image}\nADD data.tar /\nUSER {UID}:{UID}\n\
             LABEL {LABEL_MANAGED}=true {LABEL_ROLE}={} {LABEL_FROM}={:?}\n",
            role.as_str(),
            image
        );
        let mut h = Sha256::new();
        h.update(dockerfile.as_bytes());
        h.update(image_id.as_bytes());
        h.update(&layer);
        let short: String = h
            .finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(UserImage {
            tag: format!("{repo}:{short}"),
            context: context(&dockerfile, &[("data.tar", &layer)])?,
        })
    }

    /// Builds the image unless one with its tag exists.
    pub async fn ensure(
        &self,
        engine: &Engine,
        progress: &crate::progress::Progress,
    ) -> anyhow::Result<bool> {
        if engine.image_exists(&self.tag).await? {
            return Ok(false);
        }
        progress.step(&format!("building image {}", self.tag));
        build_with_retry(engine, &self.tag, &self.context, progress, None).await?;
        Ok(true)
    }
}

/// Builds an image, trying once more if the engine fails. Our contexts are generated, so a
/// failure is the engine's, and the one seen in practice is a race: another instance's
/// `stopFaas --prune` removing a cached layer (or the base) while this build reuses it.
async fn build_with_retry(
    engine: &Engine,
    tag: &str,
    context: &[u8],
    progress: &crate::progress::Progress,
    base: Option<&BaseImage>,
) -> anyhow::Result<()> {
    let first = engine
        .build_image(tag, context.to_vec(), |l| progress.detail(l))
        .await;
    let Err(e) = first else {
        return Ok(());
    };
    progress.step(&format!("building {tag} failed ({e:#}); trying once more"));
    if let Some(base) = base {
        Box::pin(base.ensure(engine, progress)).await?;
    }
    Ok(engine
        .build_image(tag, context.to_vec(), |l| progress.detail(l))
        .await?)
}

/// A user's image name goes into a generated Dockerfile's `FROM`: it must be one word of the
/// characters an image reference has, so it cannot add lines of its own.
fn check_image_ref(image: &str) -> anyhow::Result<()> {
    let ok = !image.is_empty()
        && !image.starts_with('-')
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if !ok {
        bail!(
            "'{}' is not an image reference: use a name like my-nats:2.10 or registry/name@sha256:…",
            image.escape_debug()
        );
    }
    Ok(())
}

/// A build context: the Dockerfile and the named files at the root of a tar.
fn context(dockerfile: &str, files: &[(&str, &[u8])]) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| -> anyhow::Result<()> {
        let mut h = archive::header(tar::EntryType::Regular, 0o644, 0, data.len() as u64);
        tar.append_data(&mut h, name, data)?;
        Ok(())
    };
    add("Dockerfile", dockerfile.as_bytes())?;
    for (name, data) in files {
        add(name, data)?;
    }
    Ok(tar.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_finds_libc_and_loader() {
        let exe = std::env::current_exe().unwrap();
        let libs = linked_libraries(&exe).unwrap();
        assert!(libs.iter().any(|l| l.to_string_lossy().contains("libc.so")));
        assert!(
            libs.iter()
                .any(|l| l.to_string_lossy().contains("ld-linux"))
        );
    }

    #[test]
    fn base_is_reproducible_and_has_the_runtime() {
        let a = BaseImage::assemble().unwrap();
        let b = BaseImage::assemble().unwrap();
        assert_eq!(a.tag, b.tag);
        assert!(a.tag.starts_with("rfa-base:"));
        let ctx = a.context.clone().unwrap();
        let mut outer = tar::Archive::new(ctx.as_slice());
        let mut names = Vec::new();
        for entry in outer.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().to_string();
            if path == "rootfs.tar" {
                let mut inner_bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut inner_bytes).unwrap();
                let mut inner = tar::Archive::new(inner_bytes.as_slice());
                for e in inner.entries().unwrap() {
                    let e = e.unwrap();
                    let p = e.path().unwrap().to_string_lossy().to_string();
                    if p == "data/" {
                        assert_eq!(e.header().uid().unwrap(), UID);
                    }
                    names.push(p);
                }
            }
        }
        assert!(names.iter().any(|n| n == "etc/passwd"));
        assert!(names.iter().any(|n| n == "tmp/"));
        assert!(names.iter().any(|n| n.ends_with("libc.so.6")));
        assert!(names.iter().any(|n| n.ends_with("libgcc_s.so.1")));
    }

    #[test]
    fn image_references_cannot_add_dockerfile_lines() {
        for ok in [
            "nats:2.10",
            "reg.example.com:5000/team/nats@sha256:abc",
            "rfa-base:12ab",
        ] {
            assert!(check_image_ref(ok).is_ok(), "{ok}");
        }
        for bad in ["", "nats\nRUN rm -rf /", "nats latest", "-x", "a\"b"] {
            let e = check_image_ref(bad).unwrap_err().to_string();
            assert!(e.contains("not an image reference"), "{e}");
        }
        let derived =
            UserImage::assemble("my-nats:1", "sha256:1", "rfa-nats-user", Role::Nats).unwrap();
        assert!(derived.tag.starts_with("rfa-nats-user:"));
        let other =
            UserImage::assemble("my-nats:1", "sha256:2", "rfa-nats-user", Role::Nats).unwrap();
        assert_ne!(
            derived.tag, other.tag,
            "a re-tagged image makes a new layer"
        );
        assert!(UserImage::assemble("x\nRUN id", "sha256:1", "r", Role::Nats).is_err());
    }

    #[test]
    fn normalizes() {
        assert_eq!(
            normalize(Path::new("/lib64/../lib/x")),
            PathBuf::from("/lib/x")
        );
    }
}
