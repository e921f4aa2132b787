//! CAR v1 import and export on the store (`ipfs dag export` / `dag import` semantics).
//!
//! The container format is `iroh-car`'s (its reader bounds every allocation at 4 MiB); what
//! this module adds is the store's rules: export walks the DAG depth-first in link order with
//! each block once; import verifies every block against its CID before storing it, and pins
//! roots only once their whole DAG is present.

use std::collections::HashSet;

use cid::Cid;
use iroh_car::{CarHeader, CarReader, CarWriter};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{blocking, PinMode, Store, BATCH_BLOCKS, BATCH_BYTES};
use crate::cid::Block;
use crate::unixfs::pb;
use crate::{Error, Result};

/// What a CAR import stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CarImport {
    /// The roots named in the CAR header.
    pub roots: Vec<String>,
    /// Blocks read (each verified).
    pub blocks: u64,
    /// Bytes newly stored.
    pub bytes_new: u64,
    /// Whether the roots were pinned.
    pub pinned: bool,
}

fn car_error(e: iroh_car::Error) -> Error {
    Error::InvalidCar { reason: e.to_string() }
}

/// A CAR v1 holding `blocks`, in memory, with the first as its root (for sending a batch).
pub(crate) async fn encode(blocks: &[Block]) -> Result<Vec<u8>> {
    let roots = blocks.first().map(|b| vec![*b.cid()]).unwrap_or_default();
    let mut car = CarWriter::new(CarHeader::new_v1(roots), Vec::new());
    for block in blocks {
        car.write(*block.cid(), block.data()).await.map_err(car_error)?;
    }
    car.finish().await.map_err(car_error)
}

impl Store {
    /// Writes the DAG under `root` as a CAR v1 to `writer`; returns the number of blocks.
    pub async fn export_car<W: AsyncWrite + Unpin + Send>(
        &self,
        root: &Cid,
        writer: W,
    ) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Block>(16);
        let engine = std::sync::Arc::clone(&self.engine);
        let start = *root;
        let walk = blocking(move || {
            let mut seen = HashSet::new();
            let mut stack = vec![start];
            while let Some(cid) = stack.pop() {
                if !seen.insert(cid.hash().to_bytes()) {
                    continue;
                }
                let block = engine.get(&cid)?;
                let children = pb::links(&cid, block.data())?;
                stack.extend(children.into_iter().rev());
                tx.blocking_send(block).map_err(|_| Error::Task("CAR output closed".into()))?;
            }
            Ok(())
        });
        let write = async {
            let mut car = CarWriter::new(CarHeader::new_v1(vec![*root]), writer);
            let mut count = 0u64;
            while let Some(block) = rx.recv().await {
                car.write(*block.cid(), block.data()).await.map_err(car_error)?;
                count += 1;
            }
            if count > 0 {
                car.finish().await.map_err(car_error)?;
            }
            Ok::<_, Error>(count)
        };
        let (walked, written) = tokio::join!(walk, write);
        let written = written?;
        walked?;
        Ok(written)
    }

    /// Reads a CAR v1, verifying and storing every block; with `pin`, pins every root
    /// recursively, which fails (naming the first missing block) if a root's DAG is incomplete.
    ///
    /// Blocks are temp-pinned while the import runs; nothing already stored is modified, and a
    /// failed import leaves only unpinned blocks for GC.
    pub async fn import_car<R: AsyncRead + Unpin + Send>(
        &self,
        reader: R,
        pin: bool,
    ) -> Result<CarImport> {
        let temp = self.engine.temp_pin();
        let result = self.import_car_pinned(reader, pin, temp).await;
        let engine = std::sync::Arc::clone(&self.engine);
        blocking(move || engine.release(temp)).await?;
        result
    }

    async fn import_car_pinned<R: AsyncRead + Unpin + Send>(
        &self,
        reader: R,
        pin: bool,
        temp: super::TempPin,
    ) -> Result<CarImport> {
        let mut car = CarReader::new(reader).await.map_err(car_error)?;
        let roots: Vec<Cid> = car.header().roots().to_vec();
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let mut blocks = 0u64;
        let mut bytes_new = 0u64;
        while let Some((cid, data)) = car.next_block().await.map_err(car_error)? {
            let block = Block::verified(cid, data)?;
            blocks += 1;
            batch_bytes += block.data().len();
            batch.push(block);
            if batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_BLOCKS {
                bytes_new += self.put_pinned(std::mem::take(&mut batch), temp).await?;
                batch_bytes = 0;
            }
        }
        bytes_new += self.put_pinned(batch, temp).await?;
        if pin {
            for root in &roots {
                self.pin(root, PinMode::Recursive).await?;
            }
        }
        Ok(CarImport {
            roots: roots.iter().map(Cid::to_string).collect(),
            blocks,
            bytes_new,
            pinned: pin,
        })
    }

    async fn put_pinned(&self, blocks: Vec<Block>, temp: super::TempPin) -> Result<u64> {
        if blocks.is_empty() {
            return Ok(0);
        }
        let engine = std::sync::Arc::clone(&self.engine);
        blocking(move || engine.put_blocks(&blocks, Some(temp))).await
    }
}
