//! `locod teleop`: the operator's client. `Driver` turns keyboard and gamepad input into
//! commands (the testable core: no terminal, no clock of its own); `Link` is the zenoh side
//! (publish commands, receive `state` and `diag`); `run` puts them in a terminal.
//!
//! Gamepad (gilrs, when one is connected): hold LB (the deadman) and drive with the sticks (left:
//! forward/back and sideways, right: turn); A stand up, Y walk, X sit down, Back passive, B
//! e-stop, Start reset. Keyboard: w/s forward/back, a/d turn, q/e sideways, space stop, +/-
//! speed, 1-4 passive/stand up/walk/sit down, x e-stop, r reset, Esc or Ctrl-C quit. A terminal
//! sends no key releases, so a driving key counts as held for `[teleop] key_hold_ms` after its
//! last auto-repeat. While the deadman (or a key) is held the client sends at `send_hz`; on
//! release it sends one zero and then nothing, so the robot's lease ends the command.
//!
//! Not for: deciding anything on the robot; the daemon validates and arbitrates.

use super::session::{self, Role, TeleopError};
use super::wire::{DiagMsg, EstopAction, EstopCmd, ModeCmd, RequestedMode, StateMsg, VelCmd};
use super::Keys;
use crate::config::Config;
use crate::rt::clock::monotonic_ns;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zenoh::Wait;

/// A message for the robot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outgoing {
    Vel([f64; 3]),
    Mode(RequestedMode),
    EStop,
    Reset,
}

/// A key, after the terminal's own codes are mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Char(char),
    Esc,
    CtrlC,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PadButton {
    Deadman,
    StandUp,
    Walk,
    SitDown,
    Passive,
    EStop,
    Reset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PadAxis {
    /// Left stick, up positive: forward.
    Forward,
    /// Left stick, right positive: the robot moves to its right (negative vy).
    Sideways,
    /// Right stick, right positive: turn right (negative yaw rate).
    Turn,
}

/// Stick travel ignored around the centre.
const DEADZONE: f64 = 0.1;
const SPEED_STEP: f64 = 0.1;

/// The client's input state: what is held, and when to send.
pub(crate) struct Driver {
    max_vel: [f64; 3],
    /// Fraction of `max_vel` for full input.
    pub speed: f64,
    send_period_ns: u64,
    key_hold_ns: u64,
    key_dir: [f64; 3],
    key_until_ns: u64,
    pad_deadman: bool,
    pad: [f64; 3],
    /// When the last velocity went out; `None` when not driving.
    last_sent_ns: Option<u64>,
    pub(crate) quit: bool,
}

impl Driver {
    pub fn new(config: &Config) -> Self {
        let t = config.teleop.clone().unwrap_or_default();
        Self {
            max_vel: config.command.max_vel,
            speed: 0.5,
            send_period_ns: (1e9 / t.send_hz) as u64,
            key_hold_ns: (t.key_hold_ms * 1e6) as u64,
            key_dir: [0.0; 3],
            key_until_ns: 0,
            pad_deadman: false,
            pad: [0.0; 3],
            last_sent_ns: None,
            quit: false,
        }
    }

    fn scaled(&self, dir: [f64; 3]) -> [f64; 3] {
        let mut v = [0.0; 3];
        for i in 0..3 {
            v[i] = (dir[i].clamp(-1.0, 1.0) * self.speed * self.max_vel[i]).clamp(-self.max_vel[i], self.max_vel[i]);
        }
        v
    }

    /// A key press (or auto-repeat); returns a message to send at once, if any.
    pub fn key(&mut self, now_ns: u64, key: Key) -> Option<Outgoing> {
        let c = match key {
            Key::Esc | Key::CtrlC => {
                self.quit = true;
                return self.release(now_ns);
            }
            Key::Char(c) => c.to_ascii_lowercase(),
        };
        let dir = match c {
            'w' => [1.0, 0.0, 0.0],
            's' => [-1.0, 0.0, 0.0],
            'a' => [0.0, 0.0, 1.0],
            'd' => [0.0, 0.0, -1.0],
            'q' => [0.0, 1.0, 0.0],
            'e' => [0.0, -1.0, 0.0],
            ' ' => {
                self.key_until_ns = 0;
                self.key_dir = [0.0; 3];
                return self.release(now_ns);
            }
            '+' | '=' => {
                self.speed = (self.speed + SPEED_STEP).min(1.0);
                return None;
            }
            '-' => {
                self.speed = (self.speed - SPEED_STEP).max(SPEED_STEP);
                return None;
            }
            '1' => return Some(Outgoing::Mode(RequestedMode::Passive)),
            '2' => return Some(Outgoing::Mode(RequestedMode::StandUp)),
            '3' => return Some(Outgoing::Mode(RequestedMode::Walk)),
            '4' => return Some(Outgoing::Mode(RequestedMode::SitDown)),
            'x' => return Some(Outgoing::EStop),
            'r' => return Some(Outgoing::Reset),
            _ => return None,
        };
        self.key_dir = dir;
        self.key_until_ns = now_ns + self.key_hold_ns;
        self.last_sent_ns = Some(now_ns);
        Some(Outgoing::Vel(self.scaled(dir)))
    }

    pub(crate) fn pad_button(&mut self, now_ns: u64, button: PadButton, pressed: bool) -> Option<Outgoing> {
        match (button, pressed) {
            (PadButton::Deadman, true) => {
                self.pad_deadman = true;
                self.last_sent_ns = Some(now_ns);
                Some(Outgoing::Vel(self.scaled(self.pad)))
            }
            (PadButton::Deadman, false) => {
                self.pad_deadman = false;
                self.release(now_ns)
            }
            (_, false) => None,
            (PadButton::EStop, true) => Some(Outgoing::EStop),
            (PadButton::Reset, true) => Some(Outgoing::Reset),
            (PadButton::StandUp, true) => Some(Outgoing::Mode(RequestedMode::StandUp)),
            (PadButton::Walk, true) => Some(Outgoing::Mode(RequestedMode::Walk)),
            (PadButton::SitDown, true) => Some(Outgoing::Mode(RequestedMode::SitDown)),
            (PadButton::Passive, true) => Some(Outgoing::Mode(RequestedMode::Passive)),
        }
    }

    /// A stick moved to `value` in [-1, 1].
    pub(crate) fn pad_axis(&mut self, axis: PadAxis, value: f64) {
        let v = if value.is_finite() && value.abs() > DEADZONE { value } else { 0.0 };
        match axis {
            PadAxis::Forward => self.pad[0] = v,
            PadAxis::Sideways => self.pad[1] = -v,
            PadAxis::Turn => self.pad[2] = -v,
        }
    }

    /// Whether a deadman (the pad's, or a held key) is engaged at `now_ns`.
    pub fn driving(&self, now_ns: u64) -> bool {
        self.pad_deadman || now_ns < self.key_until_ns
    }

    /// Stops driving: one zero, then silence.
    fn release(&mut self, _now_ns: u64) -> Option<Outgoing> {
        if self.pad_deadman || self.last_sent_ns.is_none() {
            return None;
        }
        self.last_sent_ns = None;
        Some(Outgoing::Vel([0.0; 3]))
    }

    /// Call often (every few milliseconds): the fixed-rate velocity while driving, and the one
    /// zero when the deadman has just been let go.
    pub(crate) fn poll(&mut self, now_ns: u64) -> Option<Outgoing> {
        if !self.driving(now_ns) {
            return self.release(now_ns);
        }
        let due = self.last_sent_ns.is_none_or(|t| now_ns >= t + self.send_period_ns);
        if !due {
            return None;
        }
        self.last_sent_ns = Some(now_ns);
        let dir = if self.pad_deadman { self.pad } else { self.key_dir };
        Some(Outgoing::Vel(self.scaled(dir)))
    }
}

/// Diagnostics lines kept for display.
const DIAG_LINES: usize = 16;

/// The zenoh side of the client: publishes commands, keeps the newest `state` and recent `diag`.
pub struct Link {
    session: zenoh::Session,
    keys: Keys,
    state: Arc<Mutex<Option<StateMsg>>>,
    diag: Arc<Mutex<VecDeque<String>>>,
    last_diag: Arc<Mutex<Option<DiagMsg>>>,
}

impl Link {
    /// Connects as configured by `[teleop]` (`client_zenoh_config`, else `listen`).
    pub fn connect(config: &Config) -> Result<Link, TeleopError> {
        Self::connect_with(config, session::zenoh_config(config, Role::Operator)?)
    }

    pub fn connect_with(config: &Config, zc: zenoh::Config) -> Result<Link, TeleopError> {
        let session = session::open_blocking(zc)?;
        let keys = Keys::of(config);
        let state = Arc::new(Mutex::new(None));
        let diag = Arc::new(Mutex::new(VecDeque::new()));
        let last_diag = Arc::new(Mutex::new(None));
        let st = state.clone();
        session
            .declare_subscriber(keys.state.clone())
            .callback(move |s| {
                if let Ok(m) = serde_json::from_slice::<StateMsg>(&s.payload().to_bytes()) {
                    *st.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
                }
            })
            .background()
            .wait()
            .map_err(|e| TeleopError::Declare { key: keys.state.clone(), message: e.to_string() })?;
        let (d, ld) = (diag.clone(), last_diag.clone());
        session
            .declare_subscriber(keys.diag.clone())
            .callback(move |s| {
                if let Ok(m) = serde_json::from_slice::<DiagMsg>(&s.payload().to_bytes()) {
                    let mut lines = d.lock().unwrap_or_else(|p| p.into_inner());
                    let new = m.events.iter().map(|e| e.text.clone());
                    let rejects = m.rejects.iter().map(|r| format!("rejected on {}: {}", r.key, r.reason));
                    for line in new.chain(rejects) {
                        if lines.len() == DIAG_LINES {
                            lines.pop_front();
                        }
                        lines.push_back(line);
                    }
                    *ld.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
                }
            })
            .background()
            .wait()
            .map_err(|e| TeleopError::Declare { key: keys.diag.clone(), message: e.to_string() })?;
        Ok(Link { session, keys, state, diag, last_diag })
    }

    pub fn send(&self, out: Outgoing) -> Result<(), TeleopError> {
        let (key, payload) = match out {
            Outgoing::Vel(v) => (&self.keys.vel, serde_json::to_vec(&VelCmd { vx: v[0], vy: v[1], wz: v[2] })),
            Outgoing::Mode(mode) => (&self.keys.mode, serde_json::to_vec(&ModeCmd { mode })),
            Outgoing::EStop => (&self.keys.estop, serde_json::to_vec(&EstopCmd { action: EstopAction::Stop })),
            Outgoing::Reset => (&self.keys.estop, serde_json::to_vec(&EstopCmd { action: EstopAction::Reset })),
        };
        let payload = payload.unwrap_or_default();
        self.session
            .put(key.clone(), payload)
            .wait()
            .map_err(|e| TeleopError::Declare { key: key.clone(), message: e.to_string() })
    }

    pub fn state(&self) -> Option<StateMsg> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn diag(&self) -> Option<DiagMsg> {
        self.last_diag.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The recent events and rejections from `diag`, oldest first.
    pub fn diag_lines(&self) -> Vec<String> {
        self.diag.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn close(self) {
        let _ = self.session.close().wait();
    }
}

/// What the client shows: one screen of text.
pub(crate) fn render(
    state: Option<&StateMsg>,
    driver: &Driver,
    now_ns: u64,
    pad: Option<&str>,
    diag: &[String],
) -> String {
    let mut s = String::new();
    match state {
        None => s.push_str("waiting for the robot's state ...\n"),
        Some(m) => {
            let fault = m.fault.as_deref().unwrap_or("none");
            s.push_str(&format!(
                "mode {:?}  controller {} ({:?})  standing {}\n",
                m.mode, m.controller, m.level, m.standing
            ));
            s.push_str(&format!(
                "command vx {:+.2} m/s  vy {:+.2} m/s  wz {:+.2} rad/s  from {:?}\n",
                m.command.vx, m.command.vy, m.command.wz, m.source
            ));
            s.push_str(&format!("fault {fault}  tilt {:.1} deg\n", m.tilt_deg));
            s.push_str(&format!(
                "loop: wake p99 {:.0} us  compute p99 {:.0} us  skipped {}  overruns {}\n",
                m.timing.wake_p99_us, m.timing.compute_p99_us, m.timing.skipped, m.timing.overruns
            ));
        }
    }
    s.push_str(&format!(
        "\nyou: {}  speed {:.0}%  gamepad {}\n",
        if driver.driving(now_ns) { "DRIVING" } else { "idle" },
        driver.speed * 100.0,
        pad.unwrap_or("none")
    ));
    s.push_str(
        "keys: w/s a/d q/e drive, space stop, +/- speed, 1 passive 2 stand 3 walk 4 sit, x E-STOP, r reset, Esc quit\n",
    );
    s.push_str("pad: hold LB + sticks, A stand, Y walk, X sit, Back passive, B E-STOP, Start reset\n\n");
    for line in diag {
        s.push_str(line);
        s.push('\n');
    }
    s
}

fn pad_button(b: gilrs::Button) -> Option<PadButton> {
    use gilrs::Button::*;
    Some(match b {
        LeftTrigger => PadButton::Deadman,
        South => PadButton::StandUp,
        North => PadButton::Walk,
        West => PadButton::SitDown,
        Select => PadButton::Passive,
        East => PadButton::EStop,
        Start => PadButton::Reset,
        _ => return None,
    })
}

fn pad_axis(a: gilrs::Axis) -> Option<PadAxis> {
    Some(match a {
        gilrs::Axis::LeftStickY => PadAxis::Forward,
        gilrs::Axis::LeftStickX => PadAxis::Sideways,
        gilrs::Axis::RightStickX => PadAxis::Turn,
        _ => return None,
    })
}

/// Restores the terminal however `run` ends.
struct RawMode;

impl RawMode {
    fn enter() -> std::io::Result<Self> {
        crossterm::terminal::enable_raw_mode()?;
        crossterm::execute!(std::io::stdout(), crossterm::terminal::EnterAlternateScreen, crossterm::cursor::Hide)?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ =
            crossterm::execute!(std::io::stdout(), crossterm::cursor::Show, crossterm::terminal::LeaveAlternateScreen);
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

fn map_key(k: crossterm::event::KeyEvent) -> Option<Key> {
    use crossterm::event::{KeyCode, KeyEventKind, KeyModifiers};
    if k.kind == KeyEventKind::Release {
        return None;
    }
    match k.code {
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Some(Key::CtrlC),
        KeyCode::Char(c) => Some(Key::Char(c)),
        KeyCode::Esc => Some(Key::Esc),
        KeyCode::Up => Some(Key::Char('w')),
        KeyCode::Down => Some(Key::Char('s')),
        KeyCode::Left => Some(Key::Char('a')),
        KeyCode::Right => Some(Key::Char('d')),
        _ => None,
    }
}

/// How often the screen is redrawn.
const REDRAW: Duration = Duration::from_millis(100);
/// Longest wait for input, so that sends stay on time.
const INPUT_POLL: Duration = Duration::from_millis(5);

/// The interactive client: a live view of the robot's state in the terminal, keyboard and
/// gamepad input. Returns when the operator quits.
pub fn run(config: &Config) -> Result<(), TeleopError> {
    let link = Link::connect(config)?;
    let mut driver = Driver::new(config);
    let mut gilrs = match gilrs::Gilrs::new() {
        Ok(g) => Some(g),
        Err(e) => {
            crate::report::warn(format!("no gamepad support ({e}); keyboard only"));
            None
        }
    };
    let _raw = RawMode::enter().map_err(|e| TeleopError::Open(format!("terminal: {e}")))?;
    let mut out = std::io::stdout();
    let mut last_draw = 0u64;
    let mut send_error: Option<String> = None;
    while !driver.quit {
        let mut outgoing = Vec::new();
        if crossterm::event::poll(INPUT_POLL).unwrap_or(false) {
            if let Ok(crossterm::event::Event::Key(k)) = crossterm::event::read() {
                if let Some(key) = map_key(k) {
                    outgoing.extend(driver.key(monotonic_ns(), key));
                }
            }
        }
        let mut pad_name = None;
        if let Some(g) = gilrs.as_mut() {
            while let Some(ev) = g.next_event() {
                let now = monotonic_ns();
                match ev.event {
                    gilrs::EventType::ButtonPressed(b, _) => {
                        outgoing.extend(pad_button(b).and_then(|b| driver.pad_button(now, b, true)))
                    }
                    gilrs::EventType::ButtonReleased(b, _) => {
                        outgoing.extend(pad_button(b).and_then(|b| driver.pad_button(now, b, false)))
                    }
                    gilrs::EventType::AxisChanged(a, v, _) => {
                        if let Some(a) = pad_axis(a) {
                            driver.pad_axis(a, v as f64)
                        }
                    }
                    // A gamepad that goes away lets go of its deadman.
                    gilrs::EventType::Disconnected => {
                        outgoing.extend(driver.pad_button(now, PadButton::Deadman, false))
                    }
                    _ => {}
                }
            }
            pad_name = g.gamepads().next().map(|(_, p)| p.name().to_string());
        }
        let now = monotonic_ns();
        outgoing.extend(driver.poll(now));
        for o in outgoing {
            if let Err(e) = link.send(o) {
                send_error = Some(e.to_string());
            }
        }
        if now >= last_draw + REDRAW.as_nanos() as u64 {
            last_draw = now;
            let mut lines = link.diag_lines();
            if let Some(e) = &send_error {
                lines.push(format!("send failed: {e}"));
            }
            let screen = render(link.state().as_ref(), &driver, now, pad_name.as_deref(), &lines);
            let _ = crossterm::queue!(
                out,
                crossterm::cursor::MoveTo(0, 0),
                crossterm::terminal::Clear(crossterm::terminal::ClearType::All)
            );
            let _ = out.write_all(screen.replace('\n', "\r\n").as_bytes());
            let _ = out.flush();
        }
    }
    link.close();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn driver() -> Driver {
        let c =
            Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))).unwrap();
        Driver::new(&c) // send_hz 20 (50 ms), key_hold_ms 600, max_vel [1.0, 0.5, 1.5]
    }

    #[test]
    fn the_pad_sends_at_the_fixed_rate_only_while_the_deadman_is_held() {
        let mut d = driver();
        d.pad_axis(PadAxis::Forward, 1.0);
        d.pad_axis(PadAxis::Turn, 0.05); // inside the dead zone
        assert_eq!(d.poll(0), None, "no deadman, no command");
        assert_eq!(d.pad_button(10 * MS, PadButton::Deadman, true), Some(Outgoing::Vel([0.5, 0.0, 0.0])));
        assert_eq!(d.poll(30 * MS), None);
        assert_eq!(d.poll(60 * MS), Some(Outgoing::Vel([0.5, 0.0, 0.0])));
        d.pad_axis(PadAxis::Sideways, 1.0);
        assert_eq!(d.poll(110 * MS), Some(Outgoing::Vel([0.5, -0.25, 0.0])));
        assert_eq!(d.pad_button(120 * MS, PadButton::Deadman, false), Some(Outgoing::Vel([0.0; 3])));
        assert_eq!(d.poll(200 * MS), None, "silence after the one zero");
        assert_eq!(d.poll(400 * MS), None);
    }

    #[test]
    fn buttons_map_to_modes_and_the_estop_needs_no_deadman() {
        let mut d = driver();
        assert_eq!(d.pad_button(0, PadButton::EStop, true), Some(Outgoing::EStop));
        assert_eq!(d.pad_button(0, PadButton::EStop, false), None);
        assert_eq!(d.pad_button(0, PadButton::StandUp, true), Some(Outgoing::Mode(RequestedMode::StandUp)));
        assert_eq!(d.pad_button(0, PadButton::Reset, true), Some(Outgoing::Reset));
        assert_eq!(d.key(0, Key::Char('x')), Some(Outgoing::EStop));
        assert_eq!(d.key(0, Key::Char('3')), Some(Outgoing::Mode(RequestedMode::Walk)));
        assert_eq!(d.poll(0), None);
    }

    #[test]
    fn a_key_drives_while_it_repeats_and_stops_after_the_hold() {
        let mut d = driver();
        assert_eq!(d.key(0, Key::Char('w')), Some(Outgoing::Vel([0.5, 0.0, 0.0])));
        assert_eq!(d.poll(50 * MS), Some(Outgoing::Vel([0.5, 0.0, 0.0])));
        d.key(500 * MS, Key::Char('+'));
        assert_eq!(d.poll(520 * MS), Some(Outgoing::Vel([0.6, 0.0, 0.0])));
        // No repeat after 0 ms: the hold ends at 600 ms.
        assert_eq!(d.poll(590 * MS), Some(Outgoing::Vel([0.6, 0.0, 0.0])));
        assert_eq!(d.poll(601 * MS), Some(Outgoing::Vel([0.0; 3])));
        assert_eq!(d.poll(700 * MS), None);
        // Space stops at once; Esc quits with a zero when driving.
        d.key(800 * MS, Key::Char('a'));
        assert_eq!(d.key(810 * MS, Key::Char(' ')), Some(Outgoing::Vel([0.0; 3])));
        assert_eq!(d.poll(820 * MS), None);
        d.key(900 * MS, Key::Char('d'));
        assert_eq!(d.key(910 * MS, Key::Esc), Some(Outgoing::Vel([0.0; 3])));
        assert!(d.quit);
    }

    #[test]
    fn the_screen_shows_state_and_input() {
        let d = driver();
        let s = render(None, &d, 0, None, &[]);
        assert!(s.contains("waiting for the robot's state"), "{s}");
        assert!(s.contains("gamepad none"), "{s}");
    }
}
