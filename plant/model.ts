/**
 * The simulated process: a small tank with a fill pump, an outlet valve and two temperatures.
 * Pure state and arithmetic (no timers, no I/O): `step(dtMs)` advances it, the servers read it.
 *
 *   level      integrates (pump inflow - outlet demand) / tank area
 *   pump       on at or below PUMP_ON_M, off at or above PUMP_OFF_M (two-point control)
 *   current    ~7.5 A with noise while running, a short start-up surge, 0 when stopped
 *   temps      first-order lag towards a setpoint (tank) or towards a load-dependent target (motor)
 *   totalisers litres (uint32, wraps) and millilitres (uint64) pumped; never decrease
 *   valve      outlet valve position drifting slowly between 30 and 90 %
 *   alarm      low-level alarm: set below ALARM_SET_M, cleared above ALARM_CLEAR_M
 */

export const TANK_AREA_M2 = 0.2;
export const PUMP_FLOW_M3H = 36;
export const PUMP_ON_M = 0.6;
export const PUMP_OFF_M = 1.9;
export const ALARM_SET_M = 0.7;
export const ALARM_CLEAR_M = 0.8;
/** Outlet demand at 100 % valve opening. */
export const OUTLET_FLOW_AT_FULL_M3H = 30;
export const TANK_SETPOINT_C = 55;
export const TANK_TAU_S = 60;
export const MOTOR_TAU_S = 90;
export const AMBIENT_C = 20;

export interface PlantState {
  /** Simulated time, ms since epoch (advanced by step). */
  time: number;
  levelM: number;
  pumpRunning: boolean;
  /** When the pump last started (ms), for the start-up surge. */
  pumpStartedAt: number;
  pumpCurrentA: number;
  /** Outlet valve position, %. */
  valvePercent: number;
  /** Outlet flow, m³/h (follows the valve). */
  outletFlowM3h: number;
  /** Pumped volume, exact millilitres (u64). */
  pumpedMl: bigint;
  tankTempC: number;
  motorTempC: number;
  lowLevelAlarm: boolean;
}


export function initialState(now: number): PlantState {
  return {
    time: now,
    levelM: 1.2,
    pumpRunning: false,
    pumpStartedAt: now,
    pumpCurrentA: 0,
    valvePercent: 55,
    outletFlowM3h: (OUTLET_FLOW_AT_FULL_M3H * 55) / 100,
    pumpedMl: 0n,
    tankTempC: 48,
    motorTempC: AMBIENT_C + 5,
    lowLevelAlarm: false,
  };
}

/** Moves x towards target with time constant tau (exact for a constant target over dt). */
export function lag(x: number, target: number, dtS: number, tauS: number): number {
  return target + (x - target) * Math.exp(-dtS / tauS);
}

const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/** Advances the plant by dtMs (steps longer than 1 s are split so the control stays sharp). */
export function step(state: PlantState, dtMs: number, random: () => number = Math.random): PlantState {
  let s = state;
  let left = Math.max(0, dtMs);
  while (left > 0) {
    const dt = Math.min(left, 1000);
    s = stepOnce(s, dt, random);
    left -= dt;
  }
  return s;
}

function stepOnce(s: PlantState, dtMs: number, random: () => number): PlantState {
  const dtS = dtMs / 1000;
  const time = s.time + dtMs;
  // Valve: a slow random walk, bounded to 30..90 %.
  const valvePercent = clamp(s.valvePercent + (random() - 0.5) * 2 * dtS, 30, 90);
  const outletFlowM3h = (OUTLET_FLOW_AT_FULL_M3H * valvePercent) / 100;
  const inflowM3h = s.pumpRunning ? PUMP_FLOW_M3H : 0;
  const levelM = clamp(s.levelM + ((inflowM3h - outletFlowM3h) / 3600) * dtS / TANK_AREA_M2, 0, 2.5);
  let pumpRunning = s.pumpRunning;
  let pumpStartedAt = s.pumpStartedAt;
  if (!pumpRunning && levelM <= PUMP_ON_M) {
    pumpRunning = true;
    pumpStartedAt = time;
  } else if (pumpRunning && levelM >= PUMP_OFF_M) {
    pumpRunning = false;
  }
  const surge = pumpRunning ? 4 * Math.exp(-(time - pumpStartedAt) / 1500) : 0;
  const pumpCurrentA = pumpRunning ? 7.5 + surge + (random() - 0.5) * 0.6 : 0;
  const pumpedMl = s.pumpedMl + (s.pumpRunning ? BigInt(Math.round((PUMP_FLOW_M3H * 1e6 / 3600) * dtS)) : 0n);
  const tankTempC = lag(s.tankTempC, TANK_SETPOINT_C, dtS, TANK_TAU_S) + (random() - 0.5) * 0.05;
  const motorTempC = lag(s.motorTempC, pumpRunning ? AMBIENT_C + 30 : AMBIENT_C + 2, dtS, MOTOR_TAU_S);
  const lowLevelAlarm = s.lowLevelAlarm ? levelM < ALARM_CLEAR_M : levelM < ALARM_SET_M;
  return { time, levelM, pumpRunning, pumpStartedAt, pumpCurrentA, valvePercent, outletFlowM3h, pumpedMl, tankTempC, motorTempC, lowLevelAlarm };
}

/** A human status word, also served over OPC-UA. */
export function statusText(s: PlantState): string {
  if (s.lowLevelAlarm) return 'LOW LEVEL';
  return s.pumpRunning ? 'FILLING' : 'DRAINING';
}

/** Pumped volume in whole litres as a uint32 (wraps at 2^32 like a real register totaliser). */
export function pumpedLitresU32(s: PlantState): number {
  return Number((s.pumpedMl / 1000n) & 0xffff_ffffn);
}
