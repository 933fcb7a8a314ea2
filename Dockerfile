# syntax=docker/dockerfile:1
# adapterhost: one ONNX base model, many LoRA adapters. Build: docker build -t adapterhost .
# Run:   docker run -p 8080:8080 -e ADAPTERHOST_ADMIN_TOKEN=... -v adapters:/app/adapters -v adapters-llm:/app/adapters-llm adapterhost

FROM node:20-bookworm-slim AS build
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY test ./test
COPY bench ./bench
COPY web ./web
COPY scripts/build-console.mjs ./scripts/
RUN npm run build

FROM node:20-bookworm-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production \
    ONNXRUNTIME_NODE_INSTALL=skip \
    ADAPTERHOST_HOST=0.0.0.0 \
    ADAPTERHOST_PORT=8080 \
    ADAPTERHOST_MODEL_DIR=/app/models/demo,/app/models/demo-llm \
    ADAPTERHOST_ADAPTERS_DIR=/app/adapters,/app/adapters-llm
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/console ./dist/console
COPY models/demo ./models/demo
COPY models/demo-llm ./models/demo-llm
COPY --chown=node:node adapters ./adapters
COPY --chown=node:node adapters-llm ./adapters-llm
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/src/cli.js", "serve"]
