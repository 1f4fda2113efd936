// Types of ngx-realtime.js, the native client of ngx_http_realtime_module.

export interface Welcome {
    userId: string;
    connectionId: string;
    pid: number;
}

export interface Joined {
    room: string;
    members: number;
    offset?: number;
    epoch?: string;
    recovered?: boolean;
}

export interface Published {
    room: string;
    recipients: number;
}

export interface Presence {
    room: string;
    users: string[];
}

export interface Refreshed {
    exp: number | null;
}

/** What the server sends: a publication, a push, a presence change. */
export interface Message<T = unknown> {
    event: string;
    data: T;
    room?: string;
    from?: string;
    offset?: number;
    epoch?: string;
    id?: number;
}

export interface RealtimeOptions {
    /** A token, or a function that gives one (again before each exp). */
    token?: string | null | (() => string | Promise<string>);
    /** The query parameter of the token (realtime_jwt_token). */
    tokenParam?: string;
    /** The WebSocket class: the browser's by default, npm "ws" in Node. */
    WebSocket?: unknown;
    reconnect?: boolean;
    /** Backoff bounds in ms; each wait is random below the cap. */
    backoffMin?: number;
    backoffMax?: number;
    /** Seconds before the token's exp to refresh it. */
    refreshBefore?: number;
    /** Ms to wait for a command's answer. */
    ackTimeout?: number;
}

export declare class RealtimeError extends Error {
    /** The protocol's code: BAD_REQUEST, FORBIDDEN, TIMEOUT, ... */
    code: string;
}

export interface RealtimeEvents {
    welcome: (data: Welcome) => void;
    message: (msg: Message) => void;
    close: (code: number, reason: string) => void;
    reconnecting: (info: { attempt: number; delay: number; code: number })
        => void;
    /** A room joined again since its last message: all of it, or not. */
    recovered: (room: string, recovered: boolean) => void;
    rejoin_failed: (room: string, error: RealtimeError) => void;
    refreshed: (data: Refreshed) => void;
    refresh_failed: (error: RealtimeError) => void;
    fatal: (error: RealtimeError) => void;
}

export declare class RealtimeClient {
    constructor(url: string, options?: RealtimeOptions);
    readonly state: "connecting" | "open" | "closed";
    readonly welcome: Welcome | null;

    on<K extends keyof RealtimeEvents>(event: K, fn: RealtimeEvents[K]): this;
    on<T = unknown>(event: string,
                    fn: (data: T, msg: Message<T>) => void): this;
    off(event: string, fn: (...args: any[]) => void): this;

    /** Resolves with the welcome once connected. */
    connect(): Promise<Welcome>;
    close(): void;
    /** Drops the socket as a network would; it reconnects. */
    drop(): void;

    join(room: string): Promise<Joined>;
    leave(room: string): Promise<{ room: string; members: number }>;
    publish(room: string, event: string, data: unknown,
            options?: { echo?: boolean }): Promise<Published>;
    presence(room: string): Promise<Presence>;
    refresh(): Promise<void>;
}
