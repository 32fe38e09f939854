//! The sensor threads of a real robot, started from the configuration, each driver composed
//! with the estimators it feeds: the WitMotion IMU (`[imu] kind = "witmotion"`) and the firmware
//! bridge (`[imu] kind = "bridge"`, and whenever `[bridge]` exists, for depth). They publish the
//! IMU into a triple buffer the control loop reads, perception into one the policy side reads,
//! and their health into shared atomics (`io::device::stats`).
//!
//! Not for: motors or CAN, and no decisions: a silent sensor shows as an old `t_ns`, which the
//! safety monitor judges.

use super::pipeline::{BridgePipeline, DepthPipeline, DepthTimes, FilteredImu, ImuPublisher};
use crate::config::{Config, ImuKind};
use crate::estimate::depth::DepthMapper;
use crate::estimate::imu::ImuFilter;
use crate::io::device::bridge::{self, BridgeLink};
use crate::io::device::stats::SensorStats;
use crate::io::device::witmotion_imu::{spawn_witmotion, WitmotionReceiver};
use crate::io::{receive_rt, OpenError};
use crate::rt::triple::{triple, Reader};
use crate::types::terrain::Perception;
use crate::types::ImuSample;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The running sensor threads and what they publish. Dropping it stops and joins the threads.
pub struct Sensors {
    /// The newest IMU sample, body frame, for the control loop (`t_ns` = 0 until the first).
    pub imu: Reader<ImuSample>,
    /// The newest elevation map and depth zones, when `[depth]` is configured.
    pub perception: Option<Reader<Perception>>,
    /// Each depth sensor's newest frame time, for the control loop (when `[depth]` is configured).
    pub(crate) depth_times: Option<Reader<DepthTimes>>,
    pub stats: Arc<SensorStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Sensors {
    /// Starts the threads `config` asks for. Devices that are absent are looked for again
    /// every `serial::RECONNECT_INTERVAL`, so a missing device is not an error here; a
    /// configuration without a real IMU is.
    pub fn start(config: &Config) -> Result<Sensors, OpenError> {
        let stats = Arc::new(SensorStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (imu_writer, imu_reader) = triple(ImuSample { t_ns: 0, ..Default::default() });
        let (perception_writer, perception_reader) = match &config.depth {
            Some(_) => {
                let (w, r) = triple(Perception::default());
                (Some(w), Some(r))
            }
            None => (None, None),
        };
        let (times_writer, depth_times) = match &config.depth {
            Some(_) => {
                let (w, r) = triple(DepthTimes::default());
                (Some(w), Some(r))
            }
            None => (None, None),
        };
        let mut sensors = Sensors {
            imu: imu_reader,
            perception: perception_reader,
            depth_times,
            stats: stats.clone(),
            stop,
            threads: Vec::new(),
        };

        // Depth needs the attitude; when the IMU is not on the bridge, the bridge reads it from a
        // second IMU triple buffer.
        let (attitude_writer, attitude_reader) = match (config.imu.kind, &config.depth) {
            (ImuKind::Witmotion, Some(_)) => {
                let (w, r) = triple(ImuSample::default());
                (Some(w), Some(r))
            }
            _ => (None, None),
        };
        let mut imu_publisher = Some(ImuPublisher::new(imu_writer, attitude_writer));
        match config.imu.kind {
            ImuKind::Mem => {
                return Err(OpenError::Config("the in-memory IMU has no sensor threads; use io::mem".into()))
            }
            ImuKind::Witmotion => {
                let publisher = imu_publisher.take().expect("set");
                let sink = FilteredImu::new(ImuFilter::new(&config.imu), publisher);
                let receiver = WitmotionReceiver::new(&config.imu, sink, stats.clone()).map_err(OpenError::Config)?;
                sensors.threads.push(spawn_witmotion(receiver, sensors.stop.clone(), receive_rt(config))?);
            }
            ImuKind::Bridge => {}
        }
        if let Some(bridge_config) = &config.bridge {
            let sink = BridgePipeline {
                imu: imu_publisher.take().map(|p| FilteredImu::new(ImuFilter::new(&config.imu), p)),
                depth: config
                    .depth
                    .as_ref()
                    .zip(perception_writer.zip(times_writer))
                    .map(|(d, (w, t))| DepthPipeline::new(DepthMapper::new(d), w).with_times(t)),
                attitude: attitude_reader,
            };
            let link = BridgeLink::new(bridge_config, sink, stats.clone());
            sensors.threads.push(bridge::spawn(link, sensors.stop.clone(), receive_rt(config))?);
        }
        if imu_publisher.is_some() {
            return Err(OpenError::Config("[imu] kind = \"bridge\" needs a [bridge] section".into()));
        }
        Ok(sensors)
    }

    /// Sensors whose IMU someone else writes (tests, benchmarks, bring-up): no threads.
    pub fn external(imu: Reader<ImuSample>) -> Sensors {
        Sensors {
            imu,
            perception: None,
            depth_times: None,
            stats: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    /// Stops the threads and waits for them (also done on drop).
    pub fn stop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Sensors {
    fn drop(&mut self) {
        self.stop();
    }
}
