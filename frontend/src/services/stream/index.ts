/** The page's WebSocket stream: what the runtime, the hooks and the test fakes import. */

export { WebSocketManager } from "./connection";
export type { ConnectionState, ManagerOptions, RefetchReason, ResumeCounts } from "./connection";
export type { FeatureCounters } from "./health";
export { resumeCommand } from "./messages";
export type { FlagsMessage, ResumePoint, ResumedMessage, ServerMessage, ServerMessageType } from "./messages";
export { CLOSE_PONG_TIMEOUT, CLOSE_UNAUTHENTICATED } from "./socket";
export type { CloseEventLike, MessageEventLike, WebSocketCtor, WebSocketLike } from "./socket";
export { streamUrl } from "./url";
