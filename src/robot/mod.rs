//! The robot assembly: drivers composed with their estimators, and the real robot (motors on
//! their buses plus the sensor threads) behind `Hardware`. `open` builds what the configuration
//! describes, for the daemon and the simulator's lock-step peer alike.
//!
//! Stands above `io` (drivers) and `estimate` (filters), which never import each other: the
//! drivers deliver raw readings to a `types::SensorSink`, and `pipeline` implements it with the
//! estimators. Not for: deciding anything (that is `control`).

pub mod pipeline;
pub mod sensors;
#[cfg(test)]
mod tests;

use crate::config::{BusKind, Config};
use crate::io::device::can_motors::{BusWatch, CanMotors};
use crate::io::doubles::mem::MemRobot;
use crate::io::OpenError;
use crate::rt::triple::Reader;
use crate::types::terrain::Perception;
use crate::types::{Hardware, HwFault, MotorCommands, SensorFrame};
use sensors::Sensors;

/// A real robot: its motors and its sensor threads, which live as long as it does.
pub struct RealRobot {
    motors: CanMotors,
    sensors: Sensors,
}

impl RealRobot {
    pub fn new(motors: CanMotors, sensors: Sensors) -> Self {
        Self { motors, sensors }
    }

    /// The motors, for tools that address one at a time.
    pub fn motors(&mut self) -> &mut CanMotors {
        &mut self.motors
    }
}

impl Hardware for RealRobot {
    fn start(&mut self) -> Result<(), String> {
        self.motors.start()
    }

    fn read(&mut self, _now_ns: u64, out: &mut SensorFrame) {
        self.motors.read_joints(out);
        out.imu = *self.sensors.imu.latest();
        if let Some(times) = self.sensors.depth_times.as_mut() {
            out.depth_t_ns = *times.latest();
        }
    }

    fn write(&mut self, _now_ns: u64, commands: &MotorCommands) -> Result<(), HwFault> {
        self.motors.write(commands)
    }

    fn stop(&mut self) {
        self.motors.stop();
    }
}

/// The robot as `open` hands it over: the hardware for the control loop, what the sensors
/// perceive of the terrain for the policy thread (when depth sensors are configured), and the
/// buses' receive-side counters for the supervisor (empty for the in-memory robot).
pub struct Opened {
    pub hardware: Box<dyn Hardware>,
    pub perception: Option<Reader<Perception>>,
    pub buses: BusWatch,
}

/// Opens the hardware the configuration describes: the in-memory robot, or the motors on their
/// buses with the IMU (and depth) read by the sensor threads.
pub fn open(config: &Config) -> Result<Opened, OpenError> {
    if config.buses.iter().all(|b| b.kind == BusKind::Mem) {
        let (robot, _faults) = MemRobot::new(&config.joints);
        return Ok(Opened { hardware: Box::new(robot), perception: None, buses: BusWatch::default() });
    }
    let mut sensors = Sensors::start(config)?;
    let perception = sensors.perception.take();
    let motors = CanMotors::open(config)?;
    let buses = motors.bus_watch();
    Ok(Opened { hardware: Box::new(RealRobot::new(motors, sensors)), perception, buses })
}
