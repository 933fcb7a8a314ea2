import { Router } from 'express';
import type { Metrics } from '../metrics.js';

/** `GET /metrics`: Prometheus text exposition of this app's registry. */
export function metricsRoutes(metrics: Metrics): Router {
  const r = Router();
  r.get('/metrics', async (_req, res) => {
    const { contentType, body } = await metrics.render();
    res.setHeader('Content-Type', contentType);
    res.setHeader('Cache-Control', 'no-store');
    res.send(body);
  });
  return r;
}
