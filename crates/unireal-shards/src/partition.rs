//! Splitting a run over processes by a stable hash of each input's key.

/// One part of a build or import split over processes (a Slurm array task): its inputs
/// (videos, import units) are assigned by a stable hash of their key, not by listing order, so
/// that the union of all partitions is the single run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: usize,
    pub count: usize,
}

impl Partition {
    pub fn new(index: usize, count: usize) -> Result<Self, String> {
        if count == 0 || index >= count {
            return Err(format!(
                "partition {index} of {count}: the index must be below the count (and the count at least 1)"
            ));
        }
        Ok(Partition { index, count })
    }

    /// From Slurm's array variables (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of
    /// `SLURM_ARRAY_TASK_COUNT`), when present.
    pub fn from_slurm_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let num = |k: &str| -> Result<Option<usize>, String> {
            get(k).map(|v| v.trim().parse::<usize>().map_err(|_| format!("{k}={v:?} is not a number"))).transpose()
        };
        let (Some(id), Some(count)) = (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?) else {
            return Ok(None);
        };
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id
            .checked_sub(min)
            .ok_or_else(|| format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"))?;
        Partition::new(index, count).map(Some).map_err(|e| {
            format!("{e} (from SLURM_ARRAY_TASK_* ; the array must be 0..N-1 or MIN..MIN+N-1 without step)")
        })
    }

    /// Whether this partition processes the input (video, import unit) with this key.
    pub fn owns(&self, key: &str) -> bool {
        (crate::stable_u64(&format!("partition:{key}")) % self.count as u64) as usize == self.index
    }

    /// Refuses a partitioned run into an output that holds a plain (unpartitioned) run:
    /// readers would take the plain manifest and never see the partitions.
    pub fn check_root(output: &std::path::Path) -> Result<(), String> {
        match output.join(crate::MANIFEST_NAME).is_file() {
            true => Err(format!(
                "{}: holds a run without partitions; a partitioned run beside it would never be read: \
                 choose another output (or --force a plain run over it)",
                output.display()
            )),
            false => Ok(()),
        }
    }

    pub fn dir(&self, output: &std::path::Path) -> std::path::PathBuf {
        output.join(crate::partition_name(self.index, self.count))
    }
}
