/**
 * React access to the page's flags through OpenFeature (src/services/openfeature.ts): the
 * dashboard binds a ThorcutWebProvider over its runtime to the `thor` domain, and the flag hooks
 * (useWebSocketAware.ts) ask an OpenFeature client of that domain.
 */

import { NOOP_PROVIDER, OpenFeature } from "@openfeature/web-sdk";
import type { Client } from "@openfeature/web-sdk";
import { createContext, useContext, useEffect, useMemo } from "react";
import type { ReactNode } from "react";

import { FLAG_DOMAIN, OpenFeatureFlags, ThorcutWebProvider } from "../services/openfeature";
import type { FlagFeed } from "../services/openfeature";

export const FeatureFlagsContext = createContext<OpenFeatureFlags | null>(null);

interface FeatureFlagsProviderProps {
  /** What the provider reads: the dashboard's LiveRuntime. */
  feed: FlagFeed;
  /** The OpenFeature domain to bind (tests may use their own); `thor` for the page. */
  domain?: string;
  children: ReactNode;
}

/**
 * While mounted, `feed`'s flags are OpenFeature's answers for `domain`; unmounted (logout), the
 * domain falls back to the no-op provider, whose answers are the callers' defaults. The page
 * never waits for the provider: until it is READY the hooks see every feature `off`, on REST.
 */
export function FeatureFlagsProvider({ feed, domain = FLAG_DOMAIN, children }: FeatureFlagsProviderProps) {
  const flags = useMemo(() => new OpenFeatureFlags(OpenFeature.getClient(domain)), [domain]);
  useEffect(() => {
    const provider = new ThorcutWebProvider(feed);
    OpenFeature.setProviderAndWait(domain, provider).catch(() => {
      // The domain's clients got PROVIDER_ERROR (the flags could not be read): answers stay the
      // defaults until the WebSocket brings the flags and the provider says READY.
    });
    return () => {
      OpenFeature.setProvider(domain, NOOP_PROVIDER);
    };
  }, [feed, domain]);
  return <FeatureFlagsContext.Provider value={flags}>{children}</FeatureFlagsContext.Provider>;
}

export function useOpenFeatureFlags(): OpenFeatureFlags {
  const flags = useContext(FeatureFlagsContext);
  if (!flags) throw new Error("the flag hooks need a <FeatureFlagsProvider> above them");
  return flags;
}

/** The OpenFeature client the page's flag hooks evaluate with (for details, hooks, events). */
export function useOpenFeatureClient(): Client {
  return useOpenFeatureFlags().client;
}
