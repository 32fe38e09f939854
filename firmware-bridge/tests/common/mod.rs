//! Sample messages and a helper shared by the integration tests.
#![allow(dead_code)]

use firmware_bridge::*;

pub fn encode<M: serde::Serialize>(frame: &Frame<M>) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = encode_frame(frame, &mut buf).expect("sample frames fit MAX_FRAME_LEN");
    buf[..n].to_vec()
}

/// The postcard body of a frame (without CRC and COBS).
pub fn body<M: serde::Serialize>(frame: &Frame<M>) -> Vec<u8> {
    let mut buf = [0u8; 2 * MAX_MESSAGE_LEN];
    postcard::to_slice(frame, &mut buf).expect("sample frames fit").to_vec()
}

pub fn depth_8x8() -> Depth {
    let mut d = Depth::empty(1, 8, 8);
    for i in 0..MAX_DEPTH_ZONES {
        d.distance_mm[i] = 300 + 37 * i as u16;
        d.status[i] = if i % 7 == 0 { 255 } else { 5 };
    }
    d
}

/// One of each MCU → host message, including worst-case sizes.
pub fn all_mcu_messages() -> Vec<McuMessage> {
    let mut max_depth = Depth::empty(u8::MAX, 8, 8);
    max_depth.distance_mm = [u16::MAX; MAX_DEPTH_ZONES];
    max_depth.status = [u8::MAX; MAX_DEPTH_ZONES];
    let mut depth_4x4 = Depth::empty(0, 4, 4);
    depth_4x4.distance_mm[..16].copy_from_slice(&[1000; 16]);
    depth_4x4.status[..16].copy_from_slice(&[9; 16]);
    vec![
        McuMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            firmware_version: [1, 2, 3],
            device_id: u64::MAX,
            device_name: Hello::name_bytes("rp2040-legs"),
        }),
        McuMessage::Imu(Imu {
            accel_mps2: [0.01, -0.02, 9.81],
            gyro_radps: [1e-3, -2e-3, f32::MAX],
            quat_wxyz: Some([1.0, 0.0, 0.0, 0.0]),
            temperature_c: 36.5,
        }),
        McuMessage::Imu(Imu { accel_mps2: [0.0; 3], gyro_radps: [0.0; 3], quat_wxyz: None, temperature_c: -40.0 }),
        McuMessage::Depth(depth_8x8()),
        McuMessage::Depth(depth_4x4),
        McuMessage::Depth(max_depth),
        McuMessage::Encoders(Encoders { len: 2, counts: [0; MAX_ENCODERS] }),
        McuMessage::Encoders(Encoders { len: MAX_ENCODERS as u8, counts: [i32::MIN; MAX_ENCODERS] }),
        McuMessage::Heartbeat(Heartbeat {
            uptime_ms: u32::MAX,
            rx: RxCounters {
                frames_ok: u32::MAX,
                cobs_errors: u32::MAX,
                crc_errors: u32::MAX,
                postcard_errors: u32::MAX,
                overflows: u32::MAX,
            },
            tx_dropped: u32::MAX,
            sensor_errors: u32::MAX,
        }),
        McuMessage::Pong(Pong { host_time_ns: u64::MAX, mcu_rx_time_us: u64::MAX }),
        McuMessage::Fault(Fault { code: fault_code::TOF_READ, detail: 0xDEAD_BEEF }),
    ]
}

pub fn all_host_messages() -> Vec<HostMessage> {
    vec![
        HostMessage::HelloRequest { protocol_version: PROTOCOL_VERSION },
        HostMessage::HelloAck { protocol_version: PROTOCOL_VERSION, accepted: true },
        HostMessage::Ping { host_time_ns: u64::MAX },
        HostMessage::Configure(Configure {
            imu_rate_hz: 400,
            depth_rate_hz: 15,
            depth_resolution: 4,
            encoder_rate_hz: 0,
            heartbeat_rate_hz: 5,
        }),
        HostMessage::Reset,
    ]
}

pub fn header(seq: u16) -> Header {
    Header { seq, time_us: u64::MAX - u64::from(seq) }
}
