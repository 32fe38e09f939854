//! Drivers composed with their estimators: what a sensor thread does with each raw reading. The
//! IMU's reading goes through mounting and the attitude filter to the control loop's triple buffer;
//! a depth reading goes into the perception, whose elevation map is rebuilt with the newest
//! attitude and handed to the policy side. Runs on the receive threads; allocation-free.
//!
//! Not for: reading devices (`io`), the estimators' arithmetic (`estimate`).

use crate::estimate::depth::DepthMapper;
use crate::estimate::imu::ImuFilter;
use crate::rt::triple::{Reader, Writer};
use crate::types::terrain::{DepthZones, Perception, MAX_DEPTH_SENSORS};
use crate::types::{Delivery, ImuSample, RawImu, SensorSink};

/// Hands each sample to the control loop's reader and, optionally, to a second one (the depth
/// mapper's attitude).
pub struct ImuPublisher {
    control: Writer<ImuSample>,
    second: Option<Writer<ImuSample>>,
}

impl ImuPublisher {
    pub fn new(control: Writer<ImuSample>, second: Option<Writer<ImuSample>>) -> Self {
        Self { control, second }
    }

    pub fn publish(&mut self, sample: ImuSample) {
        self.control.write(sample);
        if let Some(w) = &mut self.second {
            w.write(sample);
        }
    }
}

/// An IMU driver's readings through the filter to their readers.
pub struct FilteredImu {
    filter: ImuFilter,
    publisher: ImuPublisher,
}

impl FilteredImu {
    pub fn new(filter: ImuFilter, publisher: ImuPublisher) -> Self {
        Self { filter, publisher }
    }
}

impl SensorSink for FilteredImu {
    fn imu(&mut self, raw: &RawImu) -> Delivery {
        self.publisher.publish(self.filter.sample(raw));
        Delivery::Used
    }

    fn depth(&mut self, _device_sensor: u8, _zones: &DepthZones) -> Delivery {
        Delivery::NotWanted
    }

    fn restart(&mut self) {
        self.filter.reset();
    }
}

/// Depth readings into the perception (zones and elevation map) and to its reader, and each
/// sensor's newest frame time to the control loop, which judges their age.
pub struct DepthPipeline {
    mapper: DepthMapper,
    writer: Writer<Perception>,
    perception: Box<Perception>,
    times: Option<Writer<DepthTimes>>,
}

/// Each depth sensor's newest frame time (`SensorFrame::depth_t_ns`).
pub(crate) type DepthTimes = [u64; MAX_DEPTH_SENSORS];

impl DepthPipeline {
    pub fn new(mapper: DepthMapper, writer: Writer<Perception>) -> Self {
        Self { mapper, writer, perception: Box::default(), times: None }
    }

    /// Also publishes each sensor's newest frame time into `times`.
    pub(crate) fn with_times(mut self, times: Writer<DepthTimes>) -> Self {
        self.times = Some(times);
        self
    }
}

/// What the firmware bridge feeds. Each part is optional: a robot may take only depth from the
/// bridge (with the attitude from another IMU) or only the IMU.
pub struct BridgePipeline {
    /// The bridge's IMU: filter and publisher.
    pub imu: Option<FilteredImu>,
    /// Depth: the mapper and the perception writer.
    pub depth: Option<DepthPipeline>,
    /// The attitude for depth when the IMU is elsewhere.
    pub attitude: Option<Reader<ImuSample>>,
}

impl SensorSink for BridgePipeline {
    fn imu(&mut self, raw: &RawImu) -> Delivery {
        match &mut self.imu {
            Some(imu) => imu.imu(raw),
            None => Delivery::NotWanted,
        }
    }

    fn depth(&mut self, device_sensor: u8, zones: &DepthZones) -> Delivery {
        let Some(depth) = &mut self.depth else { return Delivery::NotWanted };
        let Some(index) = depth.mapper.sensor_index(device_sensor) else { return Delivery::UnknownSensor };
        depth.perception.depth[index] = *zones;
        // The filter's own attitude when the IMU is on the bridge (even with `orientation =
        // "device"`), else the other IMU's newest sample.
        let quat_wxyz = match (&self.imu, &mut self.attitude) {
            (Some(imu), _) => imu.filter.quat_wxyz(),
            (None, Some(reader)) => reader.latest().quat_wxyz,
            (None, None) => [1.0, 0.0, 0.0, 0.0],
        };
        depth.mapper.rebuild(quat_wxyz, &mut depth.perception);
        depth.writer.write(*depth.perception);
        if let Some(times) = &mut depth.times {
            times.write(depth.perception.depth.map(|z| z.t_ns));
        }
        Delivery::Used
    }

    fn restart(&mut self) {
        if let Some(imu) = &mut self.imu {
            imu.restart();
        }
    }
}
