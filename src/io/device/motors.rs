//! MIT-mode motors on CAN buses: which joint each motor drives, how its replies reach the joint's
//! latest-value slot (on the bus's receive thread), and how a joint command becomes a frame (on
//! the control thread).
//!
//! Replies are routed by CAN id and the motor id in byte 0: a Damiao motor replies from its
//! configured master id with its id in the low nibble; mini-cheetah-firmware motors (CubeMars)
//! reply with their id in byte 0, from the master id when one is configured. Not for: deciding
//! what to command.

use crate::config::Config;
use crate::io::protocol::mit::{self, JointMap, MitCommand, MotorModel, MotorRanges, ReplyFormat};
use crate::io::transport::can::CanFrame;
use crate::rt::triple::Writer;
use crate::types::{JointSample, MotorCommand};

/// One configured motor.
#[derive(Clone, Copy, Debug)]
pub struct Motor {
    pub joint: usize,
    pub bus: usize,
    pub(crate) can_id: u32,
    pub(crate) master_id: Option<u32>,
    pub model: MotorModel,
    pub ranges: MotorRanges,
    pub map: JointMap,
}

impl Motor {
    /// The configured motors in joint order.
    pub fn all(config: &Config) -> Result<Vec<Motor>, String> {
        config
            .joints
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let bus =
                    config.buses.iter().position(|b| b.name == j.bus).ok_or(format!("joint {}: no bus", j.name))?;
                let map = JointMap::new(j.direction, j.offset_rad as f32, j.gear_ratio as f32)
                    .map_err(|e| format!("joint {}: {e}", j.name))?;
                Ok(Motor {
                    joint: i,
                    bus,
                    can_id: j.can_id,
                    master_id: j.master_id,
                    model: j.motor,
                    ranges: j.ranges.unwrap_or_else(|| j.motor.ranges()),
                    map,
                })
            })
            .collect()
    }

    fn format(&self) -> ReplyFormat {
        self.model.reply_format()
    }

    /// Whether `frame` is this motor's reply.
    pub(crate) fn owns_reply(&self, frame: &CanFrame) -> bool {
        let d = frame.data();
        if frame.is_remote() || frame.is_extended() || d.is_empty() {
            return false;
        }
        match self.format() {
            ReplyFormat::Damiao => {
                Some(frame.id()) == self.master_id && d.len() == 8 && u32::from(d[0] & 0xF) == (self.can_id & 0xF)
            }
            ReplyFormat::MiniCheetah => {
                self.master_id.is_none_or(|m| m == frame.id())
                    && (d.len() == 6 || d.len() == 8)
                    && u32::from(d[0]) == (self.can_id & 0xFF)
            }
        }
    }

    /// The joint-side sample in `frame` (which `owns_reply` accepted).
    pub fn decode(&self, frame: &CanFrame, t_ns: u64) -> Option<JointSample> {
        let reply = mit::decode_reply(frame, self.format(), |_| Some(self.ranges)).ok()?;
        let joint = self.map.reply_to_joint(&reply);
        let temp = match (reply.temp_mosfet_c, reply.temp_rotor_c) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(0.0),
        };
        Some(JointSample {
            q_rad: f64::from(joint.q_rad),
            qd_radps: f64::from(joint.qd_radps),
            tau_nm: f64::from(joint.tau_nm),
            temp_c: temp,
            error: reply.error.map_or(0, |e| e.damiao_code()),
            t_ns,
        })
    }

    /// The frame commanding `cmd` (joint side) to this motor, clamped to its ranges.
    pub(crate) fn command_frame(&self, cmd: &MotorCommand) -> Option<CanFrame> {
        let joint = MitCommand {
            q_rad: cmd.q_rad as f32,
            qd_radps: cmd.qd_radps as f32,
            kp: cmd.kp as f32,
            kd: cmd.kd as f32,
            tau_ff_nm: cmd.tau_ff_nm as f32,
        };
        let motor = self.map.command_to_motor(&joint);
        mit::pack_command(self.can_id, &motor, &self.ranges).ok().map(|p| p.frame)
    }

    pub fn special_frame(&self, kind: mit::Special) -> Option<CanFrame> {
        mit::special_frame(self.can_id, kind).ok()
    }
}

/// Routes one bus's replies to its joints' slots. Lives on the bus's receive thread.
pub(crate) struct ReplyRouter {
    motors: Vec<(Motor, Writer<JointSample>)>,
    /// Frames that were no configured motor's reply.
    pub unknown: u64,
    /// Replies that did not decode.
    pub malformed: u64,
}

impl ReplyRouter {
    pub fn new(motors: Vec<(Motor, Writer<JointSample>)>) -> Self {
        Self { motors, unknown: 0, malformed: 0 }
    }

    /// Publishes the reply in `frame`, if it is one; returns the joint it updated.
    pub(crate) fn route(&mut self, frame: &CanFrame, t_ns: u64) -> Option<usize> {
        let Some((motor, slot)) = self.motors.iter_mut().find(|(m, _)| m.owns_reply(frame)) else {
            self.unknown += 1;
            return None;
        };
        match motor.decode(frame, t_ns) {
            Some(sample) => {
                slot.write(sample);
                Some(motor.joint)
            }
            None => {
                self.malformed += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::protocol::mit::{encode_reply, MotorError, MotorReply};
    use crate::rt::triple::triple;

    fn config() -> Config {
        Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))).unwrap()
    }

    fn reply(id: u8, q: f32) -> MotorReply {
        MotorReply {
            motor_id: id,
            q_rad: q,
            qd_radps: 0.5,
            tau_nm: 1.0,
            temp_mosfet_c: Some(40.0),
            temp_rotor_c: Some(45.0),
            enabled: Some(true),
            error: None,
        }
    }

    #[test]
    fn replies_reach_the_right_joint_in_joint_units() {
        let motors = Motor::all(&config()).unwrap();
        let (mut slots, mut readers) = (Vec::new(), Vec::new());
        for m in &motors {
            let (w, r) = triple(JointSample::default());
            slots.push((*m, w));
            readers.push(r);
        }
        let mut router = ReplyRouter::new(slots);
        // left_knee: AK80-9, id 2, direction -1, mini-cheetah replies.
        let knee = motors[1];
        let f = encode_reply(0x000, &reply(2, 1.0), ReplyFormat::MiniCheetah, &knee.ranges).unwrap();
        assert_eq!(router.route(&f, 77), Some(1));
        let s = *readers[1].latest();
        assert!((s.q_rad + 1.0).abs() < 1e-3, "direction -1 flips the angle: {}", s.q_rad);
        assert_eq!(s.t_ns, 77);
        // right_wheel: Damiao id 6 replying from master 0x16, with an over-current error.
        let wheel = motors[5];
        let mut r = reply(6, 0.0);
        r.error = Some(MotorError::OverCurrent);
        let f = encode_reply(0x16, &r, ReplyFormat::Damiao, &wheel.ranges).unwrap();
        assert_eq!(router.route(&f, 88), Some(5));
        let s = *readers[5].latest();
        assert_eq!((s.error, s.temp_c), (0xA, 45.0));
        // A frame nobody owns is counted, not misrouted.
        let f = encode_reply(0x000, &reply(9, 0.0), ReplyFormat::MiniCheetah, &knee.ranges).unwrap();
        assert_eq!(router.route(&f, 99), None);
        assert_eq!(router.unknown, 1);
    }

    #[test]
    fn commands_are_packed_in_motor_units() {
        let motors = Motor::all(&config()).unwrap();
        let knee = motors[1];
        let f = knee
            .command_frame(&MotorCommand { q_rad: -1.0, qd_radps: 0.0, kp: 40.0, kd: 1.0, tau_ff_nm: 0.0 })
            .unwrap();
        assert_eq!(f.id(), 0x02);
        match mit::decode_request(&f, &knee.ranges).unwrap() {
            mit::MotorRequest::Command(c) => {
                assert!((c.q_rad - 1.0).abs() < 1e-3, "motor angle is +1 for joint -1: {}", c.q_rad);
                assert!((c.kp - 40.0).abs() < 0.2);
            }
            other => panic!("{other:?}"),
        }
    }
}
