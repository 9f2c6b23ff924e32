// The API's one error shape: {"error":{"code","message"}} with a 4xx/5xx status.
export class ApiError extends Error {
  readonly status: number
  readonly code: string
  constructor (status: number, code: string, message: string) {
    super(message)
    this.status = status
    this.code = code
  }
}

export interface ErrorBody { error: { code: string, message: string } }

export const errorBody = (code: string, message: string): ErrorBody => ({ error: { code, message } })
