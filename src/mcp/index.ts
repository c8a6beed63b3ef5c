/**
 * The MCP gateway and stdio wrapper: MCP ⇄ enforcement input, nothing else. Every call becomes
 * one check through the one enforcement pipeline (src/enforce) — in the sidecar's gateway
 * directly, in the wrapper through the sidecar's DecisionService. See docs/mcp.md.
 */
export {
  loadMcpConfig,
  parseMcpConfig,
  McpConfigError,
  type McpConfig,
  type UpstreamConfig,
  type ToolRule,
} from './config';
export { startMcpGateway, MCP_PATH, type GatewayDeps, type McpGateway } from './gateway';
