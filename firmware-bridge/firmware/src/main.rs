//! Example sensor firmware for locod: a Raspberry Pi Pico (RP2040) reads an ICM-42688-P IMU over SPI at
//! 200 Hz and speaks the firmware-bridge protocol over USB CDC-ACM.
//!
//! For: showing how a board uses the `firmware-bridge` crate (framing, sequence numbers, timestamps,
//! ping/pong). Not for: production. It is not compiled in locod's CI nor run on hardware yet, and the
//! VL53L8CX ToF sensor is not driven (see `tof_task` and README.md).
//!
//! Data flow: sensor tasks stamp each message with the MCU clock and push it into `OUTBOX`; `usb_tx_task`
//! numbers, frames and writes them; `usb_rx_task` decodes host frames and answers them through `OUTBOX`.

#![no_std]
#![no_main]

use portable_atomic::{AtomicU16, AtomicU32, Ordering};

use defmt::{info, warn};
use embassy_executor::Spawner;
use embassy_futures::join::join3;
use embassy_rp::bind_interrupts;
use embassy_rp::gpio::{Level, Output};
use embassy_rp::peripherals::{DMA_CH0, DMA_CH1, SPI0, USB};
use embassy_rp::spi::{self, Spi};
use embassy_rp::usb::{self, Driver};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::channel::Channel;
use embassy_time::{Duration, Instant, Ticker, Timer};
use embassy_usb::class::cdc_acm::{CdcAcmClass, Receiver, Sender, State};
use embassy_usb::{Builder, Config};
use firmware_bridge::{
    encode_frame, fault_code, Fault, Frame, FrameDecoder, Header, Heartbeat, Hello, HostMessage, Imu, McuMessage, Pong,
    RxCounters, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use static_cell::StaticCell;
use {defmt_rtt as _, panic_probe as _};

bind_interrupts!(struct Irqs {
    USBCTRL_IRQ => usb::InterruptHandler<USB>;
    DMA_IRQ_0 => embassy_rp::dma::InterruptHandler<DMA_CH0>, embassy_rp::dma::InterruptHandler<DMA_CH1>;
});

/// Messages waiting for USB, each with the MCU time (µs) it describes. Full means USB is not keeping up:
/// the producer drops the message and counts it.
static OUTBOX: Channel<CriticalSectionRawMutex, (u64, McuMessage), 16> = Channel::new();
static TX_DROPPED: AtomicU32 = AtomicU32::new(0);
static SENSOR_ERRORS: AtomicU32 = AtomicU32::new(0);
/// IMU rate requested by the host (`Configure`); 0 pauses the IMU.
static IMU_RATE_HZ: AtomicU16 = AtomicU16::new(200);

const USB_PACKET: usize = 64;

fn now_us() -> u64 {
    Instant::now().as_micros()
}

fn send(time_us: u64, message: McuMessage) {
    if OUTBOX.try_send((time_us, message)).is_err() {
        TX_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

fn hello() -> McuMessage {
    McuMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        firmware_version: [0, 1, 0],
        device_id: 0, // TODO: read the flash unique id (embassy_rp::flash::Flash::blocking_unique_id).
        device_name: Hello::name_bytes("pico-icm42688"),
    })
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());

    // ICM-42688-P on SPI0: SCK GP18, MOSI GP19, MISO GP16, CS GP17. SPI mode 3, up to 24 MHz.
    let mut spi_config = spi::Config::default();
    spi_config.frequency = 8_000_000;
    spi_config.phase = spi::Phase::CaptureOnSecondTransition;
    spi_config.polarity = spi::Polarity::IdleHigh;
    let spi = Spi::new(p.SPI0, p.PIN_18, p.PIN_19, p.PIN_16, p.DMA_CH0, p.DMA_CH1, Irqs, spi_config);
    let cs = Output::new(p.PIN_17, Level::High);
    spawner.spawn(imu_task(Icm42688 { spi, cs }).expect("imu task spawns once"));
    spawner.spawn(tof_task().expect("tof task spawns once"));
    spawner.spawn(heartbeat_task().expect("heartbeat task spawns once"));

    let driver = Driver::new(p.USB, Irqs);
    let mut config = Config::new(0x1209, 0x0001); // pid.codes test VID/PID: replace for a product.
    config.manufacturer = Some("locod");
    config.product = Some("locod sensor bridge");
    config.max_power = 100;
    config.max_packet_size_0 = 64;

    static CONFIG_DESC: StaticCell<[u8; 256]> = StaticCell::new();
    static BOS_DESC: StaticCell<[u8; 256]> = StaticCell::new();
    static CONTROL_BUF: StaticCell<[u8; 64]> = StaticCell::new();
    static STATE: StaticCell<State> = StaticCell::new();
    let mut builder = Builder::new(
        driver,
        config,
        CONFIG_DESC.init([0; 256]),
        BOS_DESC.init([0; 256]),
        &mut [], // no Microsoft OS descriptors
        CONTROL_BUF.init([0; 64]),
    );
    let class = CdcAcmClass::new(&mut builder, STATE.init(State::new()), USB_PACKET as u16);
    let mut usb = builder.build();
    let (tx, rx) = class.split();

    send(now_us(), hello());
    join3(usb.run(), usb_tx_task(tx), usb_rx_task(rx)).await;
}

/// Numbers, frames and writes everything in `OUTBOX`. Sequence numbers are assigned here so that they
/// count exactly the frames offered to the host.
async fn usb_tx_task(mut tx: Sender<'static, Driver<'static, USB>>) {
    let mut seq: u16 = 0;
    let mut wire = [0u8; MAX_FRAME_LEN];
    loop {
        tx.wait_connection().await;
        info!("host connected");
        // A lone delimiter: the host drops whatever partial packet it had.
        let _ = tx.write_packet(&[0]).await;
        loop {
            let (time_us, message) = OUTBOX.receive().await;
            let frame = Frame { header: Header { seq, time_us }, message };
            seq = seq.wrapping_add(1);
            let Ok(n) = encode_frame(&frame, &mut wire) else {
                TX_DROPPED.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if write_all(&mut tx, &wire[..n]).await.is_err() {
                warn!("host disconnected");
                break;
            }
        }
    }
}

async fn write_all(
    tx: &mut Sender<'static, Driver<'static, USB>>,
    bytes: &[u8],
) -> Result<(), embassy_usb::driver::EndpointError> {
    for chunk in bytes.chunks(USB_PACKET) {
        tx.write_packet(chunk).await?;
    }
    // A transfer that ends on a full packet needs a zero-length packet to be delivered promptly.
    if bytes.len().is_multiple_of(USB_PACKET) {
        tx.write_packet(&[]).await?;
    }
    Ok(())
}

/// Decodes host frames and answers them.
async fn usb_rx_task(mut rx: Receiver<'static, Driver<'static, USB>>) {
    // Host frames are small; 64 bytes is ample and anything longer is counted as an overflow.
    let mut decoder = FrameDecoder::<HostMessage, 64>::new();
    let mut packet = [0u8; USB_PACKET];
    loop {
        rx.wait_connection().await;
        decoder.reset();
        while let Ok(n) = rx.read_packet(&mut packet).await {
            // One receive time per USB packet: pings are tiny and arrive alone.
            let rx_us = now_us();
            for frame in decoder.feed(&packet[..n]).flatten() {
                match frame.message {
                    HostMessage::HelloRequest { .. } => send(now_us(), hello()),
                    HostMessage::HelloAck { accepted, .. } => info!("host accepted handshake: {}", accepted),
                    HostMessage::Ping { host_time_ns } => {
                        send(now_us(), McuMessage::Pong(Pong { host_time_ns, mcu_rx_time_us: rx_us }))
                    }
                    HostMessage::Configure(c) => IMU_RATE_HZ.store(c.imu_rate_hz, Ordering::Relaxed),
                    HostMessage::Reset => cortex_m::peripheral::SCB::sys_reset(),
                }
            }
            RX_COUNTERS.lock(|c| c.set(decoder.counters()));
        }
    }
}

static RX_COUNTERS: embassy_sync::blocking_mutex::Mutex<CriticalSectionRawMutex, core::cell::Cell<RxCounters>> =
    embassy_sync::blocking_mutex::Mutex::new(core::cell::Cell::new(RxCounters {
        frames_ok: 0,
        cobs_errors: 0,
        crc_errors: 0,
        postcard_errors: 0,
        overflows: 0,
    }));

#[embassy_executor::task]
async fn heartbeat_task() {
    let mut ticker = Ticker::every(Duration::from_millis(100));
    loop {
        ticker.next().await;
        let t = now_us();
        send(
            t,
            McuMessage::Heartbeat(Heartbeat {
                uptime_ms: (t / 1000) as u32,
                rx: RX_COUNTERS.lock(|c| c.get()),
                tx_dropped: TX_DROPPED.load(Ordering::Relaxed),
                sensor_errors: SENSOR_ERRORS.load(Ordering::Relaxed),
            }),
        );
    }
}

/// The VL53L8CX must be loaded with ST's ~84 KB ranging firmware through its ULD driver (C, BSD-3) before
/// it ranges; no Rust port is included here. Until one is plugged in, report that depth is unavailable so
/// the host degrades to blind locomotion instead of waiting.
#[embassy_executor::task]
async fn tof_task() {
    Timer::after_millis(500).await;
    send(now_us(), McuMessage::Fault(Fault { code: fault_code::TOF_INIT, detail: 0 }));
    // With a driver: per sensor, on each data-ready interrupt, copy `distance_mm` and `target_status`
    // of the 64 zones into `firmware_bridge::Depth { sensor, rows: 8, cols: 8, .. }` and `send` it
    // stamped with the interrupt's time.
}

/// ICM-42688-P register map (bank 0) and scales for ±16 g and ±2000 °/s.
mod icm {
    pub const WHO_AM_I: u8 = 0x75;
    pub const WHO_AM_I_VALUE: u8 = 0x47;
    pub const PWR_MGMT0: u8 = 0x4E;
    pub const GYRO_CONFIG0: u8 = 0x4F;
    pub const ACCEL_CONFIG0: u8 = 0x50;
    /// TEMP_DATA1: temperature, accel xyz, gyro xyz follow, 14 bytes big-endian.
    pub const TEMP_DATA1: u8 = 0x1D;
    pub const READ: u8 = 0x80;
    pub const ACCEL_MPS2_PER_LSB: f32 = 9.80665 / 2048.0;
    pub const GYRO_RADPS_PER_LSB: f32 = (1.0 / 16.4) * (core::f32::consts::PI / 180.0);
}

struct Icm42688 {
    spi: Spi<'static, SPI0, embassy_rp::spi::Async>,
    cs: Output<'static>,
}

impl Icm42688 {
    async fn read(&mut self, reg: u8, out: &mut [u8]) -> Result<(), spi::Error> {
        let mut buf = [0u8; 15];
        let len = out.len() + 1;
        buf[0] = reg | icm::READ;
        self.cs.set_low();
        let result = self.spi.transfer_in_place(&mut buf[..len]).await;
        self.cs.set_high();
        out.copy_from_slice(&buf[1..len]);
        result
    }

    async fn write(&mut self, reg: u8, value: u8) -> Result<(), spi::Error> {
        self.cs.set_low();
        let result = self.spi.write(&[reg, value]).await;
        self.cs.set_high();
        result
    }

    /// On failure, the `Fault` detail: the WHO_AM_I byte read if it was wrong, or 0x100 + step for an SPI
    /// error.
    async fn init(&mut self) -> Result<(), u32> {
        let mut who = [0u8; 1];
        self.read(icm::WHO_AM_I, &mut who).await.map_err(|_| 0x100u32)?;
        if who[0] != icm::WHO_AM_I_VALUE {
            return Err(u32::from(who[0]));
        }
        // ±2000 °/s and ±16 g at 1 kHz output data rate; then both sensors in low-noise mode.
        self.write(icm::GYRO_CONFIG0, 0x06).await.map_err(|_| 0x101u32)?;
        self.write(icm::ACCEL_CONFIG0, 0x06).await.map_err(|_| 0x102u32)?;
        self.write(icm::PWR_MGMT0, 0x0F).await.map_err(|_| 0x103u32)?;
        // The gyro needs 45 ms after power-up before its data are valid.
        Timer::after_millis(50).await;
        Ok(())
    }

    async fn sample(&mut self) -> Result<Imu, spi::Error> {
        let mut raw = [0u8; 14];
        self.read(icm::TEMP_DATA1, &mut raw).await?;
        let word = |i: usize| i16::from_be_bytes([raw[i], raw[i + 1]]) as f32;
        Ok(Imu {
            accel_mps2: [word(2), word(4), word(6)].map(|v| v * icm::ACCEL_MPS2_PER_LSB),
            gyro_radps: [word(8), word(10), word(12)].map(|v| v * icm::GYRO_RADPS_PER_LSB),
            quat_wxyz: None, // no on-chip fusion used; the host estimates attitude
            temperature_c: word(0) / 132.48 + 25.0,
        })
    }
}

#[embassy_executor::task]
async fn imu_task(mut imu: Icm42688) {
    if let Err(detail) = imu.init().await {
        send(now_us(), McuMessage::Fault(Fault { code: fault_code::IMU_INIT, detail }));
        return;
    }
    let mut rate = IMU_RATE_HZ.load(Ordering::Relaxed);
    let mut ticker = Ticker::every(Duration::from_hz(u64::from(rate.max(1))));
    loop {
        ticker.next().await;
        let requested = IMU_RATE_HZ.load(Ordering::Relaxed);
        if requested != rate {
            rate = requested;
            ticker = Ticker::every(Duration::from_hz(u64::from(rate.max(1))));
        }
        if rate == 0 {
            continue;
        }
        let t = now_us();
        match imu.sample().await {
            Ok(sample) => send(t, McuMessage::Imu(sample)),
            Err(_) => {
                SENSOR_ERRORS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
