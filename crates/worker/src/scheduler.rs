//! Scheduling and model residency: which model answers, loaded where, queued how.
//!
//! The scheduler owns the loaded models (endpoints), one per (model, task), kept while the memory budget
//! allows and evicted least-recently-used when a new one needs the room (a model in use is
//! never evicted; it is dropped when its last request ends). Each endpoint has a bounded
//! queue and a concurrency limit: a request past the queue is refused with `QueueFull`, never
//! left to pile up. A request whose caller stops waiting is cancelled at the skill's next
//! step. The device comes from `ipfs-accelerate-install-depends`' selection (its reason goes
//! into every result), and deterministic results are kept in the store's cache by (model
//! CID, skill, input, parameters).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cid::Cid;
use ipfs_accelerate_common::cache::{Cache, CacheConfig, CacheKey};
use ipfs_accelerate_common::store::Store;
use ipfs_accelerate_install_depends::report::{self, LoadOptions};
use ipfs_accelerate_install_depends::select::{self, Needs, Overrides};
use ipfs_accelerate_install_depends::{Backend, BuildInfo, Host};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::capability::{Capability, Loaded};
use crate::config::WorkerConfig;
use crate::error::{Error, Result};
use crate::registry::{Model, Registry};
use crate::skill::{self, Cancel, LoadContext, ModelFiles, Skill, Task};

/// The cache namespace of inference results.
pub const RESULTS_NAMESPACE: &str = "worker";
/// Bumped when a skill's output for the same input may change: old results then miss.
const RESULTS_VERSION: u32 = 1;

/// The backends this build has kernels for, as install-depends reports them.
pub fn build_info() -> BuildInfo {
    let mut compiled = Vec::new();
    if cfg!(feature = "cuda") {
        compiled.push(Backend::Cuda);
    }
    if cfg!(feature = "metal") {
        compiled.push(Backend::Metal);
    }
    BuildInfo::new(env!("CARGO_PKG_VERSION"), &compiled)
}

/// Which model answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelRef {
    /// The model's id.
    pub cid: String,
    /// Its name, when it has one.
    pub name: Option<String>,
}

/// Where a request spent its time, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Timings {
    /// Loading the model (0 when it was loaded already).
    pub load_ms: f64,
    /// Waiting for a turn on the model.
    pub queue_ms: f64,
    /// Running the skill.
    pub run_ms: f64,
}

/// A result with what produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inference<T> {
    /// The result.
    pub output: T,
    /// The model.
    pub model: ModelRef,
    /// The skill.
    pub skill: &'static str,
    /// The device it ran on (`None` when served from the result cache).
    pub device: Option<String>,
    /// Why that device.
    pub device_reason: Option<String>,
    /// Whether it came from the result cache.
    pub cached: bool,
    /// Timings.
    pub timings: Timings,
}

/// A loaded model, as [`crate::Worker::loaded`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadedModel {
    /// The model's id.
    pub cid: String,
    /// The task it is loaded for.
    pub task: Task,
    /// Its resident bytes.
    pub bytes: u64,
    /// Requests on it now (running or queued).
    pub in_use: usize,
}

/// Loaded models under a memory budget, their queues, the device, and the result cache.
pub(crate) struct Scheduler {
    pub(crate) registry: Registry,
    cache: Cache,
    pub(crate) config: WorkerConfig,
    pub(crate) budget: u64,
    placement: tokio::sync::OnceCell<Placement>,
    /// ONNX Runtime's library, copied (verified) out of the store once per process.
    onnxruntime: tokio::sync::OnceCell<Option<std::path::PathBuf>>,
    endpoints: Mutex<HashMap<(Cid, Task), Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    endpoint: tokio::sync::OnceCell<Arc<Endpoint>>,
}

struct Endpoint {
    loaded: Arc<dyn Loaded>,
    bytes: u64,
    /// Running plus waiting requests allowed.
    depth: usize,
    /// Permits for running plus waiting requests.
    admitted: Arc<Semaphore>,
    /// Permits for running requests.
    running: Arc<Semaphore>,
    last_used: Mutex<Instant>,
}

#[derive(Clone)]
struct Placement {
    device: candle_core::Device,
    name: String,
    reason: String,
}

/// Sets the cancel flag when the request's future is dropped before the skill finished.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Scheduler {
    /// A scheduler over the models in `store`.
    pub(crate) fn new(store: Store, config: WorkerConfig) -> Scheduler {
        let budget = config.memory_budget.unwrap_or_else(|| {
            match ipfs_accelerate_install_depends::memory_info() {
                ipfs_accelerate_install_depends::Probed::Available { details } => {
                    details.total_bytes / 2
                }
                ipfs_accelerate_install_depends::Probed::Unavailable { reason, .. } => {
                    tracing::warn!(%reason, "memory size unknown; the worker's budget is 8 GiB");
                    8 << 30
                }
            }
        });
        let cache = Cache::new(store.clone(), CacheConfig::default());
        Scheduler {
            registry: Registry::new(store),
            cache,
            config,
            budget,
            placement: tokio::sync::OnceCell::new(),
            onnxruntime: tokio::sync::OnceCell::new(),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// The models loaded now.
    pub(crate) fn loaded(&self) -> Vec<LoadedModel> {
        let map = self.endpoints.lock().map(|m| {
            m.iter()
                .filter_map(|((cid, task), slot)| {
                    let endpoint = slot.endpoint.get()?;
                    Some(LoadedModel {
                        cid: cid.to_string(),
                        task: *task,
                        bytes: endpoint.bytes,
                        in_use: endpoint.depth - endpoint.admitted.available_permits(),
                    })
                })
                .collect()
        });
        map.unwrap_or_default()
    }

    /// Where the ONNX Runtime library Piper voices run on would come from, decided exactly as
    /// [`Scheduler::onnxruntime_library`] decides it but copying nothing: `None` where none is
    /// configured, an error where the one configured cannot be used (a missing file, a model
    /// under that name that is not the library).
    pub(crate) async fn onnxruntime_source(&self) -> Result<Option<String>> {
        let file = |origin: &str, path: &std::path::Path| {
            // storage-audit: allow(whether a configured library file exists; nothing is read or kept)
            if path.is_file() {
                Ok(Some(format!("{origin} {}", path.display())))
            } else {
                Err(Error::Device(format!("{origin} {} is not a file", path.display())))
            }
        };
        if let Some(path) = &self.config.onnxruntime {
            return file("[worker] onnxruntime =", path);
        }
        if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
            return file("ORT_DYLIB_PATH =", std::path::Path::new(&path));
        }
        let name = &self.config.onnxruntime_model;
        Ok(self
            .onnxruntime_model()
            .await?
            .map(|model| format!("model {name} in the store ({})", model.cid)))
    }

    /// The registry's model named `[worker] onnxruntime_model`, checked to be a library.
    async fn onnxruntime_model(&self) -> Result<Option<crate::Model>> {
        let name = &self.config.onnxruntime_model;
        let model = match self.registry.resolve(name).await {
            Ok(model) => model,
            Err(Error::UnknownModel { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if model.manifest.info.format != crate::manifest::Format::Library {
            return Err(Error::Device(format!(
                "model {name} is a {} model, not ONNX Runtime's library (import the onnxruntime wheel under that name)",
                model.manifest.info.family
            )));
        }
        Ok(Some(model))
    }

    /// The ONNX Runtime library for skills that run ONNX graphs: `[worker] onnxruntime` when
    /// set; else, when `ORT_DYLIB_PATH` is unset, the registry's model named
    /// `[worker] onnxruntime_model` (ONNX Runtime's wheel, imported like any model), copied
    /// out of the store — every byte verified against its CID — to `runtimes/<cid>/` beside
    /// the store, where the dynamic loader can open it. `None` leaves it to `ORT_DYLIB_PATH`.
    async fn onnxruntime_library(&self) -> Result<Option<std::path::PathBuf>> {
        if let Some(path) = &self.config.onnxruntime {
            return Ok(Some(path.clone()));
        }
        if std::env::var_os("ORT_DYLIB_PATH").is_some() {
            return Ok(None);
        }
        self
            .onnxruntime
            .get_or_try_init(|| async {
                let Some(model) = self.onnxruntime_model().await? else {
                    return Ok(None);
                };
                let file = &model.manifest.info.weights;
                let entry = model.manifest.file(file)?;
                let store = self.registry.store();
                let dir = store.root().with_file_name("runtimes").join(entry.cid.to_string());
                #[allow(clippy::disallowed_methods)]
                // storage-audit: allow(a verified copy of stored bytes for the dynamic loader)
                tokio::fs::create_dir_all(&dir).await.map_err(|e| {
                    Error::Device(format!("creating {}: {e}", dir.display()))
                })?;
                let path = dir.join(file);
                store.get_to_path(&entry.cid, ipfs_accelerate_common::store::Range::default(), &path).await?;
                tracing::info!(model = %model.cid, path = %path.display(), "ONNX Runtime copied out of the store");
                Ok(Some(path))
            })
            .await
            .cloned()
    }

    /// Threads for whisper.cpp and ONNX Runtime.
    fn threads(&self) -> usize {
        self.config.threads.unwrap_or_else(crate::skill::all_cores)
    }

    /// The common path: resolve, cache lookup, load, queue, run, cache store. `job` gets the
    /// capability `C` of the model loaded for `C::TASK`.
    pub(crate) async fn run<C, T>(
        &self,
        name: &str,
        operation: &str,
        request: serde_json::Value,
        cacheable: bool,
        job: impl FnOnce(&C, &Cancel) -> Result<T> + Send + 'static,
    ) -> Result<Inference<T>>
    where
        C: Capability + ?Sized,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let task = C::TASK;
        let model = self.registry.resolve(name).await?;
        let skill = skill::find(task, name, &model.manifest)?;
        let info = skill.info();
        let model_ref = ModelRef { cid: model.cid.to_string(), name: model.names.first().cloned() };
        let key = (cacheable && self.config.cache_results)
            .then(|| {
                let identity = json!({
                    "version": RESULTS_VERSION,
                    "operation": operation,
                    "skill": info.name,
                    "model": model.cid.to_string(),
                    "request": request,
                });
                CacheKey::content(RESULTS_NAMESPACE, &identity)
                    .inspect_err(|e| tracing::warn!(error = %e, "result not cacheable"))
                    .ok()
            })
            .flatten();
        if let Some(key) = &key {
            match self.cache.get_json::<T>(key).await {
                Ok(Some(output)) => {
                    return Ok(Inference {
                        output,
                        model: model_ref,
                        skill: info.name,
                        device: None,
                        device_reason: None,
                        cached: true,
                        timings: Timings::default(),
                    })
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "result cache unreadable; running the model"),
            }
        }

        let started = Instant::now();
        let (endpoint, placement) = self.endpoint(&model, task, skill).await?;
        let load_ms = ms(started.elapsed());
        let admitted = Arc::clone(&endpoint.admitted).try_acquire_owned().map_err(|_| {
            Error::QueueFull { model: model.label(), depth: self.config.queue_depth }
        })?;
        let queued = Instant::now();
        let running: OwnedSemaphorePermit = Arc::clone(&endpoint.running)
            .acquire_owned()
            .await
            .map_err(|_| Error::Task("the model was closed".into()))?;
        let queue_ms = ms(queued.elapsed());

        let cancel = Cancel::new();
        let guard = CancelOnDrop(cancel.clone());
        let ran = Instant::now();
        let worker_endpoint = Arc::clone(&endpoint);
        let span = tracing::info_span!("skill", skill = info.name, model = %model.cid);
        let output = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            // The permits live as long as the skill does, even if the caller stopped waiting.
            let _permits = (admitted, running);
            // The skill found for `C::TASK` loaded this model; one without the capability
            // is a skill that does not keep its word.
            let capability = C::of(&*worker_endpoint.loaded).ok_or_else(|| {
                Error::Task(format!("skill {} loaded a model without {task}", info.name))
            })?;
            job(capability, &cancel)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        drop(guard);
        let run_ms = ms(ran.elapsed());
        if let Ok(mut last) = endpoint.last_used.lock() {
            *last = Instant::now();
        }

        if let Some(key) = &key {
            let ttl = Some(self.config.result_ttl);
            if let Err(e) = self.cache.put_json(key, &output, ttl).await {
                tracing::warn!(error = %e, "result cache not writable; result not kept");
            }
        }
        Ok(Inference {
            output,
            model: model_ref,
            skill: info.name,
            device: Some(placement.name.clone()),
            device_reason: Some(placement.reason.clone()),
            cached: false,
            timings: Timings { load_ms, queue_ms, run_ms },
        })
    }

    /// The endpoint of (model, task), loading it (once, whoever asks at the same time) if
    /// needed.
    async fn endpoint(
        &self,
        model: &Model,
        task: Task,
        skill: &'static dyn Skill,
    ) -> Result<(Arc<Endpoint>, Placement)> {
        let key = (model.cid, task);
        let slot = {
            let mut map =
                self.endpoints.lock().map_err(|_| Error::Task("endpoint map poisoned".into()))?;
            Arc::clone(map.entry(key).or_default())
        };
        let placement = self.placement().await?;
        let mut loaded_now = false;
        let endpoint = slot
            .endpoint
            .get_or_try_init(|| {
                loaded_now = true;
                self.load(model, task, skill, &placement)
            })
            .await?;
        if let Ok(mut last) = endpoint.last_used.lock() {
            *last = Instant::now();
        }
        let endpoint = Arc::clone(endpoint);
        if loaded_now {
            // The size before loading was the files'; a skill may hold more (dequantized
            // tables, re-quantized weights). Settle the budget with what it really holds.
            if endpoint.bytes > self.budget {
                if let Ok(mut map) = self.endpoints.lock() {
                    map.remove(&key);
                }
                return Err(Error::OverBudget {
                    model: model.label(),
                    needed: endpoint.bytes,
                    budget: self.budget,
                });
            }
            self.make_room(0, key);
        }
        Ok((endpoint, placement))
    }

    async fn load(
        &self,
        model: &Model,
        task: Task,
        skill: &'static dyn Skill,
        placement: &Placement,
    ) -> Result<Arc<Endpoint>> {
        let key = (model.cid, task);
        let derived;
        let model = match skill.derive(&model.manifest) {
            Some(derivation) => {
                derived = self.registry.derive(model, &derivation).await?;
                &derived
            }
            None => model,
        };
        let paths = skill.files(&model.manifest);
        let estimate: u64 =
            paths.iter().filter_map(|p| model.manifest.files.get(p)).map(|f| f.size).sum();
        if estimate > self.budget {
            return Err(Error::OverBudget {
                model: model.label(),
                needed: estimate,
                budget: self.budget,
            });
        }
        self.make_room(estimate, key);
        let mut files = std::collections::BTreeMap::new();
        for path in paths {
            let bytes = self.registry.read_file(model, &path).await?;
            files.insert(path, bytes);
        }
        let manifest = model.manifest.clone();
        let onnxruntime = if skill.info().formats.contains(&crate::manifest::Format::Onnx) {
            self.onnxruntime_library().await?
        } else {
            None
        };
        let context =
            LoadContext { device: placement.device.clone(), threads: self.threads(), onnxruntime };
        let started = Instant::now();
        let loaded = tokio::task::spawn_blocking(move || {
            skill.load(&manifest, ModelFiles::new(files), &context)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        let bytes = loaded.memory_bytes();
        tracing::info!(model = %model.cid, skill = skill.info().name, bytes, elapsed = ?started.elapsed(), "model loaded");
        let depth = self.config.queue_depth + self.config.concurrency;
        Ok(Arc::new(Endpoint {
            loaded,
            bytes,
            depth,
            admitted: Arc::new(Semaphore::new(depth)),
            running: Arc::new(Semaphore::new(self.config.concurrency)),
            last_used: Mutex::new(Instant::now()),
        }))
    }

    /// Evicts idle endpoints, least recently used first, until `needed` more bytes fit.
    fn make_room(&self, needed: u64, keep: (Cid, Task)) {
        let Ok(mut map) = self.endpoints.lock() else { return };
        loop {
            let loaded: u64 = map.values().filter_map(|s| s.endpoint.get()).map(|e| e.bytes).sum();
            if loaded + needed <= self.budget {
                return;
            }
            let idle = map
                .iter()
                .filter(|(key, _)| **key != keep)
                .filter_map(|(key, slot)| {
                    let endpoint = slot.endpoint.get()?;
                    // Only the slot holds an idle endpoint (and the caller, if it took the slot).
                    (Arc::strong_count(endpoint) == 1).then(|| {
                        (*key, endpoint.last_used.lock().map_or_else(|_| Instant::now(), |t| *t))
                    })
                })
                .min_by_key(|(_, used)| *used);
            match idle {
                Some((key, _)) => {
                    tracing::info!(model = %key.0, task = %key.1, "unloading to make room");
                    map.remove(&key);
                }
                None => {
                    tracing::warn!(
                        needed,
                        budget = self.budget,
                        "over the memory budget: every loaded model is in use"
                    );
                    return;
                }
            }
        }
    }

    /// The device, selected once per worker.
    async fn placement(&self) -> Result<Placement> {
        self.placement
            .get_or_try_init(|| async {
                let host = Host::current();
                let build = build_info();
                let report = report::load(&self.cache, &host, &build, &LoadOptions::default())
                    .await
                    .map_err(|e| Error::Device(format!("hardware report: {e}")))?;
                let mut backends = vec![Backend::Cpu];
                backends
                    .extend([Backend::Cuda, Backend::Metal].into_iter().filter(|b| build.has(*b)));
                let needs = Needs { backends, ..Needs::default() };
                let mut overrides = Overrides::from_host(&host);
                if overrides.device.is_none() {
                    overrides.device.clone_from(&self.config.device);
                }
                let selection = select::select(&report.report, &build, &needs, &overrides)
                    .map_err(|e| Error::Device(e.to_string()))?;
                let device = candle_device(selection.device)?;
                Ok(Placement {
                    device,
                    name: selection.device.to_string(),
                    reason: selection.reason,
                })
            })
            .await
            .cloned()
    }
}

fn candle_device(
    device: ipfs_accelerate_install_depends::select::Device,
) -> Result<candle_core::Device> {
    use ipfs_accelerate_install_depends::select::Device as D;
    let unavailable = |e: candle_core::Error| Error::Device(format!("{device}: {e}"));
    match device {
        D::Cpu => Ok(candle_core::Device::Cpu),
        D::Cuda(ordinal) => candle_core::Device::new_cuda(ordinal as usize).map_err(unavailable),
        D::Metal => candle_core::Device::new_metal(0).map_err(unavailable),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
